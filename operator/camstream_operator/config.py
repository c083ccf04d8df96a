"""The operator's settings, parsed once into a typed value.

Who calls this: cli.py builds it from the command line and the pod's
environment; every other module receives it and never reads flags or env.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from camstream import ring
from camstream.handoff import Policy


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    namespace: str  # where the worker StatefulSet, the ring ConfigMap and the Leases live
    workers_statefulset: str
    ring_configmap: str
    partitions: int
    lease_name: str
    identity: str  # this replica, as written in the leader Lease
    # The namespaces whose CameraStreams this release serves; empty: all of them.
    # Two releases in one cluster must not share namespaces.
    watch_namespaces: tuple[str, ...] = ()
    liveness_port: int = 8081
    liveness_host: str = "127.0.0.1"
    interval: float = 1.0  # seconds between reconcile rounds
    lease_seconds: float = 15.0
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        if not ring.is_power_of_two(self.partitions):
            raise ValueError(f"--partitions must be a power of two, got {self.partitions}")


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
