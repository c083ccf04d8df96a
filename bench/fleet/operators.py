"""The real operator, as local processes with the chart's arguments and ServiceAccount.

Who calls this: scenario.py starts one replica for creation, SIGKILLs it and
starts another (a crash and a restart), runs two to SIGKILL the leader (a
leader change), and restarts with --partitions 2P (ring growth). Each
process is `python -m camstream_cli operator` from this checkout, with the
arguments the chart's Deployment gives it (chart.Release.operator_args), a
kubeconfig carrying the operator ServiceAccount's token, and the pod
environment a Deployment would set (POD_NAME is the replica's identity in
the leader Lease). Processes die with the bench (tests/cluster/procs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from camstream import kubeapi
from tests.cluster import procs
from tests.cluster.controlplane import free_port
from tests.cluster.kubeapi import ApiError, KubeClient

from .chart import REPO
from .config import NAMESPACE


@dataclass
class OperatorProcess:
    identity: str
    partitions: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float  # wall clock
    webhook_port: int | None = None
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _set(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def _without(args: list[str], *flags: str) -> list[str]:
    """`args` without the given flags and their values (the chart's webhook paths)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        else:
            out.append(arg)
    return out


class Operators:
    def __init__(
        self, *, chart_args: list[str], extra_args: tuple[str, ...], kubeconfig: Path,
        log_dir: Path, webhook_certs: Path | None = None,
    ) -> None:  # fmt: skip
        self._chart_args = _without(chart_args, "--webhook-cert-dir", "--webhook-port")
        self._webhook_certs = webhook_certs
        self._extra_args = extra_args
        self._kubeconfig = kubeconfig
        self._log_dir = log_dir
        self.running: dict[str, OperatorProcess] = {}

    def start(self, identity: str, partitions: int) -> OperatorProcess:
        args = _set(self._chart_args, "--partitions", str(partitions))
        # Replicas share the host: each gets its own liveness/metrics port.
        metrics_port = free_port()
        args = _set(args, "--liveness-port", str(metrics_port))
        webhook_port = None
        if self._webhook_certs is not None:
            webhook_port = free_port()
            args += ["--webhook-cert-dir", str(self._webhook_certs),
                     "--webhook-port", str(webhook_port)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(
            KUBECONFIG=str(self._kubeconfig),
            POD_NAME=identity,
            POD_NAMESPACE=NAMESPACE,
            POD_IP="127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        log = self._log_dir / f"operator-{identity}.log"
        # "{free_port}" in an extra argument (e.g. a webhook's port) is a fresh
        # port per replica: replicas on one host must not collide.
        extra = [a.replace("{free_port}", str(free_port())) for a in self._extra_args]
        argv = [sys.executable, "-m", "camstream_cli", "operator", *args, *extra]
        proc = procs.spawn(argv, log, env=env, cwd=REPO)
        op = OperatorProcess(
            identity, partitions, proc, log, time.time(), webhook_port, metrics_port
        )
        self.running[identity] = op
        return op

    def kill(self, op: OperatorProcess) -> float:
        """SIGKILL (a crash, an OOM kill, a lost node): no Lease release. Returns when."""
        when = time.time()
        if op.alive:
            os.kill(op.pid, signal.SIGKILL)
        op.proc.wait()
        self.running.pop(op.identity, None)
        return when

    def stop(self, op: OperatorProcess) -> None:
        """SIGTERM, as a rolling update does: the leader releases its Lease."""
        procs.stop(op.proc, grace=30)
        self.running.pop(op.identity, None)

    def stop_all(self) -> None:
        for op in list(self.running.values()):
            self.stop(op)


def leader(admin: KubeClient, lease_name: str) -> str | None:
    """The identity holding the operator's leader Lease, if any."""
    try:
        lease = admin.get(kubeapi.lease_path(NAMESPACE, lease_name))
    except ApiError:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


def loop_lag(op: OperatorProcess) -> dict[str, float] | None:
    """The operator's own event-loop lag figures from its /metrics, None if unreadable.

    `max` is the worst lag since the process started; `over_100ms` counts the
    50 ms probes that woke more than 100 ms late (histogram buckets).
    """
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    if op.metrics_port is None or not op.alive:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "camstream_event_loop_lag_max_seconds":
                out["max"] = sample.value
            elif sample.name == "camstream_event_loop_stall_max_seconds":
                out["stall_max"] = sample.value
            elif (
                sample.name == "camstream_event_loop_stall_seconds_bucket"
                and sample.labels.get("le") == "0.1"
            ):
                out["stall_within_100ms"] = sample.value
            elif sample.name == "camstream_event_loop_lag_seconds_count":
                out["probes"] = sample.value
            elif (
                sample.name == "camstream_event_loop_lag_seconds_bucket"
                and sample.labels.get("le") == "0.1"
            ):
                out["within_100ms"] = sample.value
    if "probes" in out and "within_100ms" in out:
        out["over_100ms"] = out["probes"] - out["within_100ms"]
    if "probes" in out and "stall_within_100ms" in out:
        out["stalls_over_100ms"] = out["probes"] - out["stall_within_100ms"]
    return out
