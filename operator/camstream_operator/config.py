"""The operator's settings, parsed once into a typed value.

Who calls this: cli.py builds it from the command line and the pod's
environment; every other module receives it and never reads flags or env.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from camstream import partition_labels, ring
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
    interval: float = 1.0  # seconds between ring rounds when nothing changes
    lease_seconds: float = 15.0
    # A worker away longer than this loses its home partitions; shorter (a
    # rolling update, a crash and restart) and it gets the same ones back.
    rejoin_grace: float = 300.0
    # The admission webhook: served when a certificate folder is given
    # (tls.crt and tls.key, as a kubernetes.io/tls Secret mounts them).
    webhook_cert_dir: Path | None = None
    webhook_port: int = 9443
    webhook_host: str = "127.0.0.1"
    label_rate: float = 200.0  # fallback label patches per second, at most
    recheck_seconds: float = 300.0  # between level-triggered checks for unlabelled streams
    retention_interval: float = 300.0  # between sweeps of the recordings store (leader only)
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        if not ring.is_power_of_two(self.partitions):
            raise ValueError(f"--partitions must be a power of two, got {self.partitions}")
        if self.partitions > partition_labels.MAX_PARTITIONS:
            raise ValueError(
                f"--partitions must be at most {partition_labels.MAX_PARTITIONS}, "
                f"got {self.partitions}"
            )
        if self.label_rate <= 0:
            raise ValueError(f"--label-rate must be positive, got {self.label_rate}")


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
