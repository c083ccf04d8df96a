"""One fleet run, phase by phase: the harness both the benchmark and the test call.

Who calls this: bench/fleet_bench.py (once per N) and tests/cluster/test_fleet.py
(N = 300), through `run(config)`, which returns the figures as a plain dict
(report.py prints it; the test asserts on it). The set-up is live.py, each
phase is in phases.py, the windows' figures come from measure.py.

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

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import live, phases, probes
from . import plane as plane_mod
from .config import FleetConfig
from .sampler import Sampler


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
    the_run: live.Run | None = None
    try:
        for name, pid in plane.processes().items():
            sampler.watch(name, pid)
        sampler.watch("bench", os.getpid())  # the harness's own cost, apart
        the_run = await live.setup(cfg, plane, sampler)
        result["heartbeat_seconds"] = the_run.heartbeats.period
        if cfg.operator:
            result["setup"] = await phases.start_operator(the_run)
        result["creation"] = await phases.creation(the_run)
        result["steady"] = await phases.steady(the_run)
        wanted = cfg.phases
        steps = [
            ("worker_list", wanted.worker_list, phases.worker_list),
            ("restart", wanted.restart and cfg.operator, phases.restart),
            ("leader_change", wanted.leader_change and cfg.operator, phases.leader_change),
            ("growth", wanted.growth and cfg.operator, phases.growth),
            ("real_worker", wanted.real_worker, phases.real_worker),
        ]
        for key, asked, step in steps:
            if asked:
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
            await live.teardown(the_run)
        plane.stop()
        sampler.stop()
        if cfg.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _config_dict(cfg: FleetConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["work_dir"] = str(cfg.work_dir) if cfg.work_dir else None
    out["bin_dir"] = str(cfg.bin_dir) if cfg.bin_dir else None
    return out
