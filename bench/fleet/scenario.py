"""One fleet run, phase by phase: the harness both the benchmark and the test call.

Who calls this: bench/fleet_bench.py (once per N) and tests/cluster/test_fleet.py
(N = 300), through `run(config)`, which returns the figures as a plain dict
(report.py prints it; the test asserts on it).

Phases, in order, on a fresh etcd + kube-apiserver (plane.py):

    setup        CRD, the chart's RBAC and accounts, W fake workers + heartbeats,
                 the operator (one replica); wait for a ring served by all W
    creation     N creates, 64 in flight; until every stream is assigned (or the
                 deadline), then until the operator goes quiet
    steady       `window` seconds with nothing happening (one worker's watch open)
    worker_list  one worker's LIST for its partitions, and all streams for comparison
    restart      SIGKILL the operator, start a new one; until it leads and is quiet
    leader       a second replica, SIGKILL the leader; until the other leads, quiet
    growth       restart with --partitions 2P; until every stream is assigned for 2P
    real_worker  one `camstream worker` for a fake pod (optional)

Every window's requests come from the audit log (audit.py), attributed by
user; RSS and CPU from the sampler. A phase that cannot finish (no leader,
deadline) records what it saw and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from camstream import kubeapi
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubeapi import ApiError, KubeClient

from . import accounts, audit, chart, members, predicates, probes, streams
from . import plane as plane_mod
from .api import BenchApi
from .config import MEMBERS_ACCOUNT, NAMESPACE, FleetConfig
from .operators import OperatorProcess, Operators, leader
from .sampler import Sampler
from .tracker import Tracker, follow_ring, follow_streams, percentiles

log = logging.getLogger("fleet")
# An operator is quiet once, for QUIET_SECONDS, it wrote nothing but its leader
# Lease and used little more CPU than when idle before the streams came
# (its ring loop costs something per worker, so "idle" depends on W).
QUIET_SECONDS = 10.0
QUIET_MARGIN_CORES = 0.05


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

    def start_operator(self, identity: str, partitions: int) -> OperatorProcess:
        op = self.operators.start(identity, partitions)
        self.sampler.watch(f"operator:{identity}", op.pid)
        return op


# -- set-up -------------------------------------------------------------------


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


async def _setup(cfg: FleetConfig, plane: ControlPlane, sampler: Sampler) -> Run:
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
                            kubeconfig=kubeconfigs[op_account], log_dir=plane.log_dir),
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


# -- helpers for the phases ----------------------------------------------------------


async def _wait(condition: Any, within: float, period: float = 0.5) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(period)
    return bool(condition())


async def _wait_leader(run: Run, identity: str, within: float) -> float | None:
    """When `identity` holds the leader Lease (None if not within `within` seconds)."""
    deadline = time.time() + within
    while time.time() < deadline:
        if await run.leader() == identity:
            return time.time()
        await asyncio.sleep(0.5)
    return None


async def _wait_quiet(run: Run, names: list[str], least_until: float) -> float:
    """Wait until `least_until`, then until the operator processes `names` are quiet (capped)."""
    cap = time.time() + run.cfg.settle_cap
    cores = max(run.idle_cores * 1.5, run.idle_cores + QUIET_MARGIN_CORES)
    while time.time() < cap:
        now = time.time()
        if (
            now >= least_until
            and all(run.sampler.idle_since(n, QUIET_SECONDS, cores) for n in names)
            and not _operator_wrote(run, now - QUIET_SECONDS, now)
        ):
            break
        await asyncio.sleep(1.0)
    return time.time()


async def _audit_past(run: Run, moment: float, margin: float = 1.0, within: float = 15.0) -> None:
    """Read the audit log until it holds requests received `margin` s after `moment`.

    Batch mode writes events a little after their requests; the fake workers'
    heartbeats (every period, W of them) guarantee later requests exist."""
    if run.cfg.audit_mode == "none":
        return
    deadline = time.time() + within
    while True:
        run.audit.catch_up()
        if run.audit.latest >= moment + margin or time.time() > deadline:
            return
        await asyncio.sleep(0.5)


def _operator_wrote(run: Run, start: float, end: float) -> bool:
    """Did the operator write anything but Leases in [start, end)?"""
    if run.cfg.audit_mode == "none":
        return False
    run.audit.catch_up()
    counts = run.audit.window(start, end, role="operator")
    return any(r.verb in audit.WRITE_VERBS and r.resource != "leases" for r in counts)


async def _figures(
    run: Run, start: float, end: float, process_names: list[str]
) -> dict[str, Any]:
    """Requests by role in [start, end), the operator's in detail, and process figures."""
    await _audit_past(run, end)
    counts = run.audit.window(start, end)
    ops = Counter({r: n for r, n in counts.items() if r.role == "operator"})
    minutes = max((end - start) / 60, 1e-9)
    out: dict[str, Any] = {
        "start": start,
        "end": end,
        "seconds": end - start,
        "operator_requests": audit.by_verb_resource(ops),
        "operator_codes": audit.by_code(ops),
        "operator_writes": audit.writes(ops),
        "operator_stream_writes": audit.writes(ops, "camerastreams"),
        "operator_event_writes": audit.writes(ops, "events"),
        "operator_writes_per_minute": audit.writes(ops) / minutes,
        "operator_stream_writes_per_minute": audit.writes(ops, "camerastreams") / minutes,
        "operator_served_seconds": percentiles(run.audit.served_seconds(start, end, "operator")),
        "requests_by_role": audit.by_role(counts),
        "writes_by_role": audit.by_role(
            Counter({r: n for r, n in counts.items() if r.verb in audit.WRITE_VERBS})
        ),
        "processes": {},
    }
    for name in [*process_names, "kube-apiserver", "etcd", "bench"]:
        stats = run.sampler.stats(name, start, end)
        if stats is not None:
            out["processes"][name] = {**asdict(stats), "cores": stats.cores}
    out["assigned_now"] = _assigned_now(run)
    return out


def _assigned_now(run: Run) -> int:
    """Streams whose latest view satisfies the predicate now (regressions show here)."""
    t = run.tracker
    ok = sum(1 for k, v in t.views.items() if t.predicate.satisfied(v, k, t.partitions))
    return ok if not t.predicate.needs_ring or t.ring_at is not None else 0


async def _leading(run: Run) -> OperatorProcess:
    """The replica holding the leader Lease."""
    holder = await run.leader()
    op = run.operators.running.get(holder or "")
    if op is None or not op.alive:
        raise RuntimeError(f"the leader Lease names {holder!r}, which is not running here")
    return op


# -- phases ---------------------------------------------------------------------


async def _start_operator(run: Run) -> dict[str, Any]:
    began = time.time()
    op = run.start_operator("cams-operator-1", run.cfg.partitions)
    ok = await _wait(lambda: run.tracker.ring_at is not None, 180)
    await asyncio.sleep(QUIET_SECONDS)  # the ring loop alone: what "idle" costs at this W
    idle = run.sampler.stats(f"operator:{op.identity}", time.time() - QUIET_SECONDS, time.time())
    run.idle_cores = idle.cores if idle else 0.0
    run.say(f"operator up, ring of {run.cfg.partitions} served by {len(run.pods)} workers"
            if ok else "operator up, but no complete ring after 180 s")  # fmt: skip
    return {
        "ring_complete_seconds": (run.tracker.ring_at - began) if ok and run.tracker.ring_at
        else None,
        "operator_idle_cores": run.idle_cores,
        "operator_idle_rss": idle.last_rss if idle else None,
    }  # fmt: skip


async def _creation(run: Run) -> dict[str, Any]:
    cfg, tracker = run.cfg, run.tracker
    targets = streams.keys(cfg.streams, cfg.stream_namespaces)
    run.say(f"creating {cfg.streams} streams, {cfg.in_flight} in flight")
    start = time.time()
    progress = asyncio.get_running_loop().create_task(_progress(run))
    try:
        created = await streams.create_all(run.bench, targets, in_flight=cfg.in_flight,
                                           on_created=tracker.on_created)  # fmt: skip
        run.say(f"created {len(created.latencies)} in {created.finished - created.started:.0f} s "
                f"({created.rate:.0f}/s); waiting for assignment")  # fmt: skip
        all_in = await _wait(lambda: tracker.assigned() >= len(run.keys),
                             cfg.deadline if cfg.operator else 0, period=1.0)  # fmt: skip
    finally:
        progress.cancel()
    last = tracker.last_assigned(run.keys) if all_in else None
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    end = await _wait_quiet(run, names, time.time()) if cfg.operator else time.time()
    run.say(f"assigned {tracker.assigned()} of {len(run.keys)}"
            + (f", last {last - start:.0f} s after the first create" if last else ""))  # fmt: skip
    figures = await _figures(run, start, end, names)
    latencies = tracker.latencies()
    figures.update(
        created=len(created.latencies),
        create_seconds=created.finished - created.started,
        create_rate=created.rate,
        create_latency=percentiles(created.latencies),
        create_retries={str(k): v for k, v in created.retries.items()},
        create_failed={str(k): v for k, v in created.failed.items()},
        assigned=tracker.assigned(),
        never_assigned=len(run.keys) - tracker.assigned(),
        assign_latency=percentiles(latencies),
        first_create_to_last_assigned=(last - start) if last else None,
        operator_writes_per_stream=figures["operator_writes"] / cfg.streams,
        operator_stream_writes_per_stream=figures["operator_stream_writes"] / cfg.streams,
    )
    return figures


async def _progress(run: Run) -> None:
    while True:
        await asyncio.sleep(15)
        t = run.tracker
        run.say(f"... created {len(t.created)}, assigned {t.assigned()} of {len(run.keys)}")


async def _steady(run: Run) -> dict[str, Any]:
    watch = None
    data = _ring_data(run)
    if run.cfg.phases.worker_list and data:
        mine, size = probes.worker_partitions(data, run.pods[0])
        watch = probes.WorkerWatch(run.worker_api, run.tracker.predicate.selector(mine, size))
        await watch.start()
    run.say(f"steady window, {run.cfg.window:.0f} s")
    start = time.time()
    await asyncio.sleep(run.cfg.window)
    end = time.time()
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    figures = await _figures(run, start, end, names)
    if watch is not None:
        figures["worker_watch"] = await watch.stop()
    figures["etcd"] = probes.etcd_size(run.plane)
    return figures


async def _worker_list(run: Run) -> dict[str, Any]:
    run.say("one worker's LIST, and all streams for comparison")
    return await probes.worker_list(run.worker_api, run.tracker.predicate, _ring_data(run),
                                    run.pods[0], run.keys)  # fmt: skip


def _ring_data(run: Run) -> dict[str, str] | None:
    """The ring ConfigMap's data; None before the operator wrote one."""
    try:
        cm = run.admin.get(kubeapi.configmap_path(NAMESPACE, run.ring_name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return dict(cm.get("data") or {}) or None


async def _crash(run: Run, victim: OperatorProcess, successor: str, phase: str) -> dict[str, Any]:
    """SIGKILL `victim`; measure until `successor` leads and every operator is quiet."""
    killed = run.operators.kill(victim)
    run.say(f"{phase}: SIGKILLed {victim.identity}; waiting for {successor} to lead")
    if successor not in run.operators.running:
        run.start_operator(successor, victim.partitions)
    led = await _wait_leader(run, successor, 120)
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    # What the new leader does on taking over must be inside the window.
    end = await _wait_quiet(run, names, max(killed + run.cfg.window, (led or 0) + QUIET_SECONDS))
    figures = await _figures(run, killed, end, names)
    figures["leader_after_seconds"] = (led - killed) if led else None
    after = figures["leader_after_seconds"]
    led_text = f"leads after {after:.1f} s" if after is not None else "did not lead in 120 s"
    run.say(f"{phase}: {successor} {led_text}; "
            f"{figures['operator_stream_writes']} operator writes to streams")  # fmt: skip
    return figures


async def _restart(run: Run) -> dict[str, Any]:
    return await _crash(run, await _leading(run), "cams-operator-2", "restart")


async def _leader_change(run: Run) -> dict[str, Any]:
    victim = await _leading(run)
    standby = "cams-operator-3"
    run.start_operator(standby, victim.partitions)
    run.say("leader change: a second replica starts and catches up")
    began = time.time()
    await _wait_quiet(run, [f"operator:{standby}"], began + QUIET_SECONDS)
    warmup = time.time() - began
    figures = await _crash(run, victim, standby, "leader change")
    figures["standby_warmup_seconds"] = warmup
    return figures


async def _growth(run: Run) -> dict[str, Any]:
    cfg, tracker = run.cfg, run.tracker
    grown = cfg.partitions * 2
    run.operators.stop_all()  # a rolling update: SIGTERM, the Lease is released
    start = time.time()
    tracker.retarget(grown, start)
    run.start_operator("cams-operator-4", grown)
    run.say(f"ring growth: operator restarted with --partitions {grown}")
    done = await _wait(lambda: tracker.assigned() >= len(run.keys), cfg.deadline, period=1.0)
    last = tracker.last_assigned(run.keys) if done else None
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    end = await _wait_quiet(run, names, time.time())
    figures = await _figures(run, start, end, names)
    figures.update(
        partitions=grown,
        ring_grown_seconds=(tracker.ring_at - start) if tracker.ring_at else None,
        assigned=tracker.assigned(),
        all_assigned_seconds=(last - start) if last else None,
        operator_writes_per_stream=figures["operator_writes"] / cfg.streams,
    )
    run.say(f"ring growth: {tracker.assigned()} of {len(run.keys)} assigned for {grown}")
    return figures


async def _real_worker(run: Run) -> dict[str, Any]:
    pod = run.pods[0]
    data = _ring_data(run)
    if not data:
        return {"skipped": "no ring ConfigMap: without an operator a worker has nothing to run"}
    mine, size = probes.worker_partitions(data, pod)
    expected = probes.streams_in(run.keys, mine, size)
    run.say(f"real worker for {pod}: {len(mine)} partitions, {expected} streams")
    await run.heartbeats.pause(pod)
    try:
        figures = await probes.real_worker(
            worker_args=run.release.worker_args(), pod_name=pod, pod_ip=members.pod_ip(0),
            kubeconfig=run.worker_kubeconfig, work_dir=run.plane.work_dir, sampler=run.sampler,
            expected=expected, give_up_after=max(300.0, run.cfg.deadline),
        )  # fmt: skip
    finally:
        run.heartbeats.resume(pod)
    start, end = figures.pop("window")
    await _audit_past(run, end)
    counts = run.audit.window(start, end, role="worker")
    figures["requests"] = audit.by_verb_resource(counts)
    figures["partitions"] = len(mine)
    return figures


# -- the run --------------------------------------------------------------------


async def run(cfg: FleetConfig) -> dict[str, Any]:
    """Run every phase `cfg` asks for on a fresh cluster; the figures, as a dict."""
    work = cfg.work_dir or Path(tempfile.mkdtemp(prefix="camstream-fleet-"))
    result: dict[str, Any] = {
        "config": _config_dict(cfg),
        "work_dir": str(work),
        "load_average_start": os.getloadavg(),
    }
    sampler = Sampler()
    sampler.start()
    # Spawned from this thread, which outlives them (procs.spawn's PDEATHSIG).
    plane = plane_mod.start(work, cfg.audit_mode, cfg.bin_dir)
    the_run: Run | None = None
    try:
        for name, pid in plane.processes().items():
            sampler.watch(name, pid)
        sampler.watch("bench", os.getpid())  # the harness's own cost, apart
        the_run = await _setup(cfg, plane, sampler)
        result["heartbeat_seconds"] = the_run.heartbeats.period
        if cfg.operator:
            result["setup"] = await _start_operator(the_run)
        result["creation"] = await _creation(the_run)
        result["steady"] = await _steady(the_run)
        phases = cfg.phases
        steps = [
            ("worker_list", phases.worker_list, _worker_list),
            ("restart", phases.restart and cfg.operator, _restart),
            ("leader_change", phases.leader_change and cfg.operator, _leader_change),
            ("growth", phases.growth and cfg.operator, _growth),
            ("real_worker", phases.real_worker, _real_worker),
        ]
        for key, wanted, step in steps:
            if wanted:
                result[key] = await step(the_run)
        result["etcd"] = probes.etcd_size(plane)
        result["processes_peak"] = {
            name: max((s.rss for s in series), default=0)
            for name, series in sampler.samples.items()
        }
        if cfg.audit_mode != "none":
            the_run.audit.catch_up()
            result["audit"] = {**plane_mod.audit_health(plane), "lines": the_run.audit.lines,
                               "unreadable": the_run.audit.unreadable}  # fmt: skip
    finally:
        if the_run is not None:
            await _teardown(the_run)
        plane.stop()
        sampler.stop()
        if cfg.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return result


async def _teardown(run: Run) -> None:
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


def _config_dict(cfg: FleetConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["work_dir"] = str(cfg.work_dir) if cfg.work_dir else None
    out["bin_dir"] = str(cfg.bin_dir) if cfg.bin_dir else None
    return out
