"""The knobs of one fleet run, parsed once into a typed value.

Who calls this: bench/fleet_bench.py builds one FleetConfig per N from its
flags; tests/cluster/test_fleet.py builds a small one; scenario.py reads it.
Nothing else reads flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

RELEASE = "cams"  # the Helm release: objects are cams-operator, cams-worker, cams-ring
NAMESPACE = "camstream"  # the release namespace (operator, workers, ring, Leases)
# Fake worker pods are bound to a node that does not exist: nothing runs them,
# and no kubelet or node controller touches them.
FAKE_NODE = "camstream-fleet-fake-node"
# Heartbeats of the fake workers are written with their own ServiceAccount (bound to
# the chart's worker Role), so the audit log tells them apart from a real worker's.
MEMBERS_ACCOUNT = "cams-fleet-members"


@dataclass(frozen=True)
class Phases:
    """Which measurements after creation and the steady window to run."""

    restart: bool = True  # SIGKILL the operator, start a new one
    leader_change: bool = True  # two replicas, SIGKILL the leader
    growth: bool = True  # restart with --partitions 2P
    worker_list: bool = True  # one worker's LIST + WATCH with its selector
    real_worker: bool = False  # one real `camstream worker` process for a fake pod


@dataclass(frozen=True)
class FleetConfig:
    streams: int  # N
    workers: int = 200  # W fake worker pods
    partitions: int = 8192  # P, the operator's --partitions
    assigned: str = "legacy"  # predicates.PREDICATES key
    stream_namespaces: int = 10
    in_flight: int = 64  # concurrent creates
    # Seconds after the last create completes to wait for every stream to be assigned.
    deadline: float = 600.0
    window: float = 60.0  # steady-state window, and the least any later window lasts
    settle_cap: float = 900.0  # the longest wait for an operator to go quiet
    heartbeat_seconds: float | None = None  # None: the worker CLI's default
    audit_mode: str = "batch"  # batch | blocking | none (no request counts)
    operator: bool = True  # False: only create (to measure the API server alone)
    operator_args: tuple[str, ...] = ()  # appended to the chart's operator arguments
    # The operator's admission webhook labels streams in their create request
    # (the chart's default); False: the operator's fallback labeller does it all.
    webhook: bool = True
    phases: Phases = field(default_factory=Phases)
    work_dir: Path | None = None  # None: a new temporary directory, removed at the end
    bin_dir: Path | None = None  # None: scripts/build-controlplane.sh's (cached) build
    quiet: bool = False  # no progress lines on stderr

    def __post_init__(self) -> None:
        if self.streams < 1 or self.workers < 1:
            raise ValueError("--streams and --workers must be at least 1")
        if self.partitions & (self.partitions - 1) or self.partitions < 1:
            raise ValueError(f"--partitions must be a power of two, got {self.partitions}")
        if self.audit_mode not in ("batch", "blocking", "none"):
            raise ValueError(f"--audit-mode must be batch, blocking or none: {self.audit_mode}")
