"""Point measurements: one worker's LIST + WATCH, etcd's size, one real worker process.

Who calls this: scenario.py, after the steady window (LIST, sizes) or during
it (the worker's WATCH), and at the end (the real worker). Each returns a
plain dict of figures for the report.

- `worker_list`: what one worker pays to start: a paged LIST (limit 500, as
  client-go pages) of the CameraStreams with the label selector it would use
  for its partitions (predicates.Predicate.selector), as the worker's own
  ServiceAccount; and, for comparison, every stream paged and unpaged.
- `WorkerWatch`: the same selector watched during the steady window: events
  and bytes one worker receives while nothing changes.
- `etcd_size`: etcd's database size from its /metrics.
- `real_worker`: `camstream worker` started for one fake pod (the bench stops
  that pod's heartbeat first; the worker renews its own Lease): time to
  /readyz, time until it runs every stream of its partitions, its RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from camstream import handoff, kubeapi, ring
from camstream.handoff_codec import decode_doc
from tests.cluster import procs
from tests.cluster.controlplane import ControlPlane, free_port

from . import api as bench_api
from .chart import REPO
from .config import NAMESPACE
from .plane import etcd_metrics, metric_sum
from .predicates import Predicate
from .sampler import Sampler


def etcd_size(plane: ControlPlane) -> dict[str, float]:
    text = etcd_metrics(plane)
    return {
        "db_bytes": metric_sum(text, "etcd_mvcc_db_total_size_in_bytes"),
        "db_in_use_bytes": metric_sum(text, "etcd_mvcc_db_total_size_in_use_in_bytes"),
        "keys": metric_sum(text, "etcd_debugging_mvcc_keys_total"),
    }


def worker_partitions(ring_data: dict[str, str], worker: str) -> tuple[frozenset[int], int]:
    """The partitions `worker` runs in the ring ConfigMap's data, and the ring's size."""
    doc = decode_doc(ring_data)
    return handoff.partitions_for(doc, worker), doc.partitions


def streams_in(keys: Iterable[str], mine: frozenset[int], partitions: int) -> int:
    """How many of `keys` ("ns/name") fall in the partitions `mine`."""
    return sum(1 for key in keys if ring.partition_of(key, partitions) in mine)


async def _timed_list(
    api: bench_api.BenchApi, selector: str | None, limit: int | None
) -> dict[str, Any]:
    params = {"labelSelector": selector} if selector else None
    began = time.monotonic()
    if limit is None:
        # Unpaged: weigh it without parsing 100+ MB; every item has one uid.
        answer = await api.request(
            "GET", kubeapi.stream_path(None), params=params, parse=False, time_limit=900
        )
        seconds = time.monotonic() - began
        return {"seconds": seconds, "bytes": answer.size, "pages": 1, "status": answer.status}
    listed = await bench_api.list_paged(
        api, kubeapi.stream_path(None), params=params, limit=limit, keep=False
    )
    return {
        "seconds": time.monotonic() - began,
        "bytes": listed.size,
        "pages": listed.pages,
        "items": listed.count,
    }


async def worker_list(
    worker_api: bench_api.BenchApi,
    predicate: Predicate,
    ring_data: dict[str, str] | None,
    worker: str,
    keys: Iterable[str],
) -> dict[str, Any]:
    """Time and weigh the LISTs; without a ring (no operator) only the full ones."""
    out: dict[str, Any] = {"worker": worker}
    if ring_data:
        mine, partitions = worker_partitions(ring_data, worker)
        selector = predicate.selector(mine, partitions)
        out.update(
            partitions=len(mine),
            selector_chars=len(selector),
            expected_streams=streams_in(keys, mine, partitions),
            selector_paged=await _timed_list(worker_api, selector, 500),
        )
    out["all_paged"] = await _timed_list(worker_api, None, 500)
    out["all_unpaged"] = await _timed_list(worker_api, None, None)
    return out


class WorkerWatch:
    """A worker's watch on its partitions, held open to count what it receives."""

    def __init__(self, api: bench_api.BenchApi, selector: str) -> None:
        self._api = api
        self._selector = selector
        self.events = 0
        self.bookmarks = 0
        self.bytes = 0
        self.errors: list[str] = []
        self.opened: float | None = None
        self.closed: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await bench_api.list_paged(
            self._api, kubeapi.stream_path(None), params={"labelSelector": self._selector},
            keep=False,
        )  # fmt: skip
        self.opened = time.time()
        self._task = asyncio.get_running_loop().create_task(self._run(listed.resource_version))

    async def _run(self, version: str) -> None:
        try:
            async for kind, obj, size in self._api.watch(
                kubeapi.stream_path(None),
                resource_version=version,
                params={"labelSelector": self._selector},
            ):
                self.bytes += size
                if kind == "BOOKMARK":
                    self.bookmarks += 1
                elif kind == "ERROR":
                    self.errors.append(str(obj)[:200])
                else:
                    self.events += 1
        except Exception as exc:  # counted, never fatal: it is a probe
            self.errors.append(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> dict[str, Any]:
        self.closed = time.time()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        minutes = max((self.closed - (self.opened or self.closed)) / 60, 1e-9)
        return {
            "events": self.events,
            "bookmarks": self.bookmarks,
            "bytes": self.bytes,
            "events_per_minute": self.events / minutes,
            "errors": self.errors[:5],
        }


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def real_worker(
    *,
    worker_args: list[str],
    pod_name: str,
    pod_ip: str,
    kubeconfig: Path,
    work_dir: Path,
    sampler: Sampler,
    expected: int,
    give_up_after: float,
) -> dict[str, Any]:
    """Run one `camstream worker` for `pod_name` until it runs its `expected` streams."""
    http_port, rtmp_port = free_port(), free_port()
    args = list(worker_args)
    for flag, value in (
        ("--http-port", str(http_port)), ("--rtmp-port", str(rtmp_port)),
        ("--hls-dir", str(work_dir / "hls")), ("--host", pod_ip),
    ):  # fmt: skip
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(
        KUBECONFIG=str(kubeconfig), POD_NAME=pod_name, POD_NAMESPACE=NAMESPACE,
        POD_IP=pod_ip, PYTHONUNBUFFERED="1",
    )  # fmt: skip
    log = work_dir / "logs" / f"worker-{pod_name}.log"
    started = time.time()
    proc = procs.spawn(
        [sys.executable, "-m", "camstream_cli", "worker", *args], log, env=env, cwd=REPO
    )
    sampler.watch("worker", proc.pid, tree=True)  # with its engine processes
    base = f"http://{pod_ip}:{http_port}"
    ready_at = loaded_at = None
    running = 0
    try:
        while time.time() - started < give_up_after and proc.poll() is None:
            if ready_at is None and await asyncio.to_thread(_ready, f"{base}/readyz"):
                ready_at = time.time()
            if ready_at is not None:
                listed = await asyncio.to_thread(_get_json, f"{base}/api/streams")
                running = len(listed) if isinstance(listed, list) else running
                if running >= expected:
                    loaded_at = time.time()
                    break
            await asyncio.sleep(0.5)
        await asyncio.sleep(10)  # let its memory settle after the burst of starts
        ended = time.time()
        stats = sampler.stats("worker", started, ended)
        exited = proc.poll()  # on its own, before we stop it
    finally:
        sampler.unwatch("worker")
        # SIGKILL the group: a SIGTERM would start a graceful leave and move
        # its partitions, which is not what is measured here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return {
        "pod": pod_name,
        "expected_streams": expected,
        "running_streams": running,
        "ready_seconds": None if ready_at is None else ready_at - started,
        "all_running_seconds": None if loaded_at is None else loaded_at - started,
        "exited_by_itself": exited,
        "rss_bytes": stats.last_rss if stats else None,
        "peak_rss_bytes": stats.peak_rss if stats else None,
        "cpu_seconds": stats.cpu_seconds if stats else None,
        "window": [started, ended],
        "log": str(log),
    }
