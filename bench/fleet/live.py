"""The live parts of one fleet run: set up on a fresh cluster, shared by the phases, torn down.

Who calls this: scenario.py (`setup` after the control plane is up,
`teardown` at the end, whatever happened); phases.py and measure.py use the
`Run` it returns. Set-up installs what a release would (the CRD, the
chart's RBAC and accounts), the fake workers and their heartbeats, and starts
the bench's watch of every stream and its poll of the ring; it does not start
the operator (phases.start_operator does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camstream import kubeapi
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubeapi import ApiError, KubeClient

from . import accounts, audit, chart, members, predicates, streams, webhook
from . import plane as plane_mod
from .api import BenchApi
from .config import MEMBERS_ACCOUNT, NAMESPACE, FleetConfig
from .operators import OperatorProcess, Operators, leader
from .sampler import Sampler
from .tracker import Tracker, follow_ring, follow_streams


@dataclass
class Run:
    """The live parts of one run, shared by the phases."""

    cfg: FleetConfig
    plane: ControlPlane
    release: chart.Release
    admin: KubeClient
    bench: BenchApi
    worker_api: BenchApi
    audit: audit.AuditLog
    sampler: Sampler
    heartbeats: members.Heartbeats
    operators: Operators
    tracker: Tracker
    pods: list[str]
    keys: list[str]
    worker_kubeconfig: Path
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    idle_cores: float = 0.0  # the operator's CPU with a settled ring and no streams

    def say(self, message: str) -> None:
        if not self.cfg.quiet:
            stamp = time.strftime("%H:%M:%S")
            print(f"[fleet {stamp} +{time.time() - self.started:6.0f}s] {message}",
                  file=sys.stderr, flush=True)  # fmt: skip

    @property
    def lease_name(self) -> str:
        return self.release.operator_flag("--lease-name")

    @property
    def ring_name(self) -> str:
        return self.release.operator_flag("--ring-configmap")

    async def leader(self) -> str | None:
        return await asyncio.to_thread(leader, self.admin, self.lease_name)

    def ring_data(self) -> dict[str, str] | None:
        """The ring ConfigMap's data; None before the operator wrote one."""
        try:
            cm = self.admin.get(kubeapi.configmap_path(NAMESPACE, self.ring_name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.get("data") or {}) or None

    def start_operator(self, identity: str, partitions: int) -> OperatorProcess:
        op = self.operators.start(identity, partitions)
        self.sampler.watch(f"operator:{identity}", op.pid)
        return op


def _kubectl_apply(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                         "items": objects}))  # fmt: skip


def _install(plane: ControlPlane, admin: KubeClient, cfg: FleetConfig) -> chart.Release:
    plane.kubectl("apply", "-f", str(chart.REPO / "crds" / "camerastream.yaml"))
    plane.kubectl("wait", "--for=condition=Established", "crd/camerastreams.camstream.io",
                  "--timeout=60s")  # fmt: skip
    admin.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": NAMESPACE}})  # fmt: skip
    release = chart.render(partitions=cfg.partitions, workers=cfg.workers)
    _kubectl_apply(plane, release.rbac())
    accounts.bind_to_role(admin, NAMESPACE, MEMBERS_ACCOUNT, release.role("worker"))
    streams.prepare_namespaces(admin, streams.namespaces(cfg.stream_namespaces))
    return release


async def setup(cfg: FleetConfig, plane: ControlPlane, sampler: Sampler) -> Run:
    """Install the release, the fake workers and the bench's watchers on `plane`."""
    admin = KubeClient.from_kubeconfig(plane.kubeconfig)
    release = _install(plane, admin, cfg)
    op_account, worker_account = release.account("operator"), release.account("worker")
    kubeconfigs = {
        a: accounts.kubeconfig(plane, admin, NAMESPACE, a)
        for a in (op_account, worker_account, MEMBERS_ACCOUNT)
    }
    pods = members.create_pods(admin, release.statefulset, cfg.workers)
    roles = {
        accounts.username(NAMESPACE, op_account): "operator",
        accounts.username(NAMESPACE, worker_account): "worker",
        accounts.username(NAMESPACE, MEMBERS_ACCOUNT): "members",
        "kubernetes-admin": "bench",
    }
    admin_cert = plane.pki.clients["admin"]
    bench = BenchApi(plane.server, plane.ca_cert, cert=admin_cert.cert, key=admin_cert.key,
                     limit=cfg.in_flight + 8)  # fmt: skip
    worker_token = accounts.token(admin, NAMESPACE, worker_account)
    ring_name = release.operator_flag("--ring-configmap")
    period = cfg.heartbeat_seconds or members.worker_heartbeat_seconds()
    run = Run(
        cfg=cfg, plane=plane, release=release, admin=admin, bench=bench,
        worker_api=BenchApi(plane.server, plane.ca_cert, token=worker_token, limit=4),
        audit=audit.AuditLog(plane_mod.audit_path(plane), roles), sampler=sampler,
        heartbeats=members.Heartbeats(kubeconfigs[MEMBERS_ACCOUNT], ring_name, period),
        operators=Operators(chart_args=release.operator_args(), extra_args=cfg.operator_args,
                            kubeconfig=kubeconfigs[op_account], log_dir=plane.log_dir,
                            webhook_certs=webhook.certificate(plane, plane.work_dir / "webhook")
                            if cfg.webhook else None),
        tracker=Tracker(predicates.get(cfg.assigned), cfg.partitions),
        pods=pods,
        keys=[f"{ns}/{name}" for ns, name in streams.keys(cfg.streams, cfg.stream_namespaces)],
        worker_kubeconfig=kubeconfigs[worker_account],
    )  # fmt: skip
    await run.heartbeats.start(pods)
    loop = asyncio.get_running_loop()
    run.tasks += [
        loop.create_task(follow_streams(bench, run.tracker), name="stream watch"),
        loop.create_task(follow_ring(bench, run.tracker, namespace=NAMESPACE, name=ring_name,
                                     up=frozenset(pods), on_data=run.heartbeats.confirm),
                         name="ring poll"),
    ]  # fmt: skip
    return run


async def teardown(run: Run) -> None:
    """Stop everything `setup` and the phases started (the cluster is stopped after)."""
    for task in run.tasks:
        task.cancel()
    for task in run.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for op in list(run.operators.running.values()):
        run.operators.kill(op)  # the cluster goes next: no need for a graceful leave
    await run.heartbeats.close()
    await run.bench.close()
    await run.worker_api.close()
