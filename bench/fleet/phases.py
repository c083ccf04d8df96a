"""The phases of a fleet run after set-up, each returning its figures as a dict.

Who calls this: scenario.py, in this order: start_operator, creation,
steady, then those the config asks for: worker_list, restart, leader_change,
growth, real_worker. Each phase ends on measure.wait_quiet (or its own
condition) and returns measure.figures for its window plus what is its own.
A phase that cannot finish (no leader, deadline) records what it saw.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import audit, measure, members, operators, probes, streams, webhook
from .live import Run
from .operators import OperatorProcess
from .tracker import percentiles


async def start_operator(run: Run) -> dict[str, Any]:
    began = time.time()
    op = run.start_operator("cams-operator-1", run.cfg.partitions)
    if op.webhook_port is not None:
        await asyncio.to_thread(webhook.register, run.plane, op.webhook_port)
    ok = await measure.wait(lambda: run.tracker.ring_at is not None, 180)
    quiet = measure.QUIET_SECONDS
    await asyncio.sleep(quiet)  # the ring loop alone: what "idle" costs at this W
    idle = run.sampler.stats(f"operator:{op.identity}", time.time() - quiet, time.time())
    run.idle_cores = idle.cores if idle else 0.0
    run.say(f"operator up, ring of {run.cfg.partitions} served by {len(run.pods)} workers"
            if ok else "operator up, but no complete ring after 180 s")  # fmt: skip
    return {
        "ring_complete_seconds": (run.tracker.ring_at - began) if ok and run.tracker.ring_at
        else None,
        "operator_idle_cores": run.idle_cores,
        "operator_idle_rss": idle.last_rss if idle else None,
    }  # fmt: skip


async def creation(run: Run) -> dict[str, Any]:
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
        all_in = await measure.wait(lambda: tracker.assigned() >= len(run.keys),
                             cfg.deadline if cfg.operator else 0, period=1.0)  # fmt: skip
    finally:
        progress.cancel()
    last = tracker.last_assigned(run.keys) if all_in else None
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    end = await measure.wait_quiet(run, names, time.time()) if cfg.operator else time.time()
    run.say(f"assigned {tracker.assigned()} of {len(run.keys)}"
            + (f", last {last - start:.0f} s after the first create" if last else ""))  # fmt: skip
    figures = await measure.window_figures(run, start, end, names)
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
        operator_loop_lag={
            op.identity: operators.loop_lag(op) for op in run.operators.running.values()
        },
        operator_writes_per_stream=figures["operator_writes"] / cfg.streams,
        operator_stream_writes_per_stream=figures["operator_stream_writes"] / cfg.streams,
    )
    return figures


async def _progress(run: Run) -> None:
    while True:
        await asyncio.sleep(15)
        t = run.tracker
        run.say(f"... created {len(t.created)}, assigned {t.assigned()} of {len(run.keys)}")


async def steady(run: Run) -> dict[str, Any]:
    watch = None
    data = run.ring_data()
    if run.cfg.phases.worker_list and data:
        mine, size = probes.worker_partitions(data, run.pods[0])
        watch = probes.WorkerWatch(run.worker_api, run.tracker.predicate.selector(mine, size))
        await watch.start()
    run.say(f"steady window, {run.cfg.window:.0f} s")
    start = time.time()
    await asyncio.sleep(run.cfg.window)
    end = time.time()
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    figures = await measure.window_figures(run, start, end, names)
    if watch is not None:
        figures["worker_watch"] = await watch.stop()
    figures["etcd"] = probes.etcd_size(run.plane)
    figures["operator_loop_lag"] = {
        op.identity: operators.loop_lag(op) for op in run.operators.running.values()
    }
    return figures


async def worker_list(run: Run) -> dict[str, Any]:
    run.say("one worker's LIST, and all streams for comparison")
    return await probes.worker_list(run.worker_api, run.tracker.predicate, run.ring_data(),
                                    run.pods[0], run.keys)  # fmt: skip


async def _crash(run: Run, victim: OperatorProcess, successor: str, phase: str) -> dict[str, Any]:
    """SIGKILL `victim`; measure until `successor` leads and every operator is quiet."""
    killed = run.operators.kill(victim)
    run.say(f"{phase}: SIGKILLed {victim.identity}; waiting for {successor} to lead")
    if successor not in run.operators.running:
        run.start_operator(successor, victim.partitions)
    led = await measure.wait_leader(run, successor, 120)
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    # What the new leader does on taking over must be inside the window.
    least = max(killed + run.cfg.window, (led or 0) + measure.QUIET_SECONDS)
    end = await measure.wait_quiet(run, names, least)
    figures = await measure.window_figures(run, killed, end, names)
    figures["leader_after_seconds"] = (led - killed) if led else None
    after = figures["leader_after_seconds"]
    led_text = f"leads after {after:.1f} s" if after is not None else "did not lead in 120 s"
    run.say(f"{phase}: {successor} {led_text}; "
            f"{figures['operator_stream_writes']} operator writes to streams")  # fmt: skip
    return figures


async def restart(run: Run) -> dict[str, Any]:
    return await _crash(run, await measure.leading(run), "cams-operator-2", "restart")


async def leader_change(run: Run) -> dict[str, Any]:
    victim = await measure.leading(run)
    standby = "cams-operator-3"
    run.start_operator(standby, victim.partitions)
    run.say("leader change: a second replica starts and catches up")
    began = time.time()
    await measure.wait_quiet(run, [f"operator:{standby}"], began + measure.QUIET_SECONDS)
    warmup = time.time() - began
    figures = await _crash(run, victim, standby, "leader change")
    figures["standby_warmup_seconds"] = warmup
    return figures


async def growth(run: Run) -> dict[str, Any]:
    cfg, tracker = run.cfg, run.tracker
    grown = cfg.partitions * 2
    run.operators.stop_all()  # a rolling update: SIGTERM, the Lease is released
    start = time.time()
    tracker.retarget(grown, start)
    run.start_operator("cams-operator-4", grown)
    run.say(f"ring growth: operator restarted with --partitions {grown}")
    done = await measure.wait(lambda: tracker.assigned() >= len(run.keys), cfg.deadline, period=1.0)
    last = tracker.last_assigned(run.keys) if done else None
    names = [f"operator:{op.identity}" for op in run.operators.running.values()]
    end = await measure.wait_quiet(run, names, time.time())
    figures = await measure.window_figures(run, start, end, names)
    figures.update(
        partitions=grown,
        ring_grown_seconds=(tracker.ring_at - start) if tracker.ring_at else None,
        assigned=tracker.assigned(),
        all_assigned_seconds=(last - start) if last else None,
        operator_loop_lag={
            op.identity: operators.loop_lag(op) for op in run.operators.running.values()
        },
        operator_writes_per_stream=figures["operator_writes"] / cfg.streams,
    )
    run.say(f"ring growth: {tracker.assigned()} of {len(run.keys)} assigned for {grown}")
    return figures


async def real_worker(run: Run) -> dict[str, Any]:
    pod = run.pods[0]
    data = run.ring_data()
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
    await measure.audit_past(run, end)
    counts = run.audit.window(start, end, role="worker")
    figures["requests"] = audit.by_verb_resource(counts)
    figures["partitions"] = len(mine)
    return figures
