"""A phase's window: waiting until the operator is quiet, and the figures inside it.

Who calls this: phases.py, at the end of each phase. "Quiet" means that for
QUIET_SECONDS the operator wrote nothing but its leader Lease and used little
more CPU than when it was idle before the streams came (its ring loop costs
something per worker, so "idle" depends on W and is measured per run).
The figures of a window [start, end) are the audit log's requests by role
(the operator's by verb, resource and code, and how long the API server took
over them) and the sampler's RSS and CPU of each process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from . import audit
from .live import Run
from .operators import OperatorProcess
from .tracker import percentiles

QUIET_SECONDS = 10.0
QUIET_MARGIN_CORES = 0.05


async def wait(condition: Any, within: float, period: float = 0.5) -> bool:
    """Poll `condition()` until true or `within` seconds passed; its last value."""
    deadline = time.time() + within
    while time.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(period)
    return bool(condition())


async def wait_leader(run: Run, identity: str, within: float) -> float | None:
    """When `identity` holds the leader Lease (None if not within `within` seconds)."""
    deadline = time.time() + within
    while time.time() < deadline:
        if await run.leader() == identity:
            return time.time()
        await asyncio.sleep(0.5)
    return None


async def wait_quiet(run: Run, names: list[str], least_until: float) -> float:
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


async def audit_past(run: Run, moment: float, margin: float = 1.0, within: float = 15.0) -> None:
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


async def window_figures(
    run: Run, start: float, end: float, process_names: list[str]
) -> dict[str, Any]:
    """Requests by role in [start, end), the operator's in detail, and process figures."""
    await audit_past(run, end)
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


async def leading(run: Run) -> OperatorProcess:
    """The replica holding the leader Lease."""
    holder = await run.leader()
    op = run.operators.running.get(holder or "")
    if op is None or not op.alive:
        raise RuntimeError(f"the leader Lease names {holder!r}, which is not running here")
    return op
