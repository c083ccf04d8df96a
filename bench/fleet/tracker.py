"""When each CameraStream first satisfied the "assigned" predicate.

Who calls this: scenario.py starts `follow_streams` and `follow_ring` for the
whole run and asks the Tracker how many streams are assigned and how long
each took. Its own watch is one cluster-wide watch of CameraStreams (metadata
only when the predicate needs no status: a tenth of the bytes) and one GET of
the ring ConfigMap per second; both are the bench's requests in the audit
log, not the operator's.

Times are wall-clock seconds (time.time()) taken when the bench receives the
event, the same clock as the audit log's timestamps. A stream may be seen
assigned before its create call returned (labels set at admission); its
latency is then 0.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from camstream import kubeapi

from . import api as bench_api
from .predicates import Predicate, View, ring_complete

log = logging.getLogger("fleet.tracker")


def stream_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Tracker:
    def __init__(self, predicate: Predicate, partitions: int) -> None:
        self.predicate = predicate
        self.partitions = partitions
        self.created: dict[str, float] = {}  # "ns/name" -> when its create returned
        self.views: dict[str, View] = {}
        self.satisfied_at: dict[str, float] = {}
        self.ring_at: float | None = None  # when the ring was first complete for `partitions`
        self.ring_partitions: int | None = None  # as last read

    def on_created(self, key: str, when: float) -> None:
        self.created[key] = when

    def observe(self, key: str, view: View, when: float) -> None:
        self.views[key] = view
        if key not in self.satisfied_at and self.predicate.satisfied(view, key, self.partitions):
            self.satisfied_at[key] = when

    def forget(self, key: str) -> None:
        self.views.pop(key, None)

    def ring_seen(self, complete: bool, partitions: int | None, when: float) -> None:
        self.ring_partitions = partitions
        if complete and self.ring_at is None:
            self.ring_at = when

    def retarget(self, partitions: int, when: float) -> None:
        """From now on "assigned" is for a ring of `partitions` (ring growth)."""
        self.partitions = partitions
        self.satisfied_at.clear()
        self.ring_at = None
        for key, view in self.views.items():
            if self.predicate.satisfied(view, key, partitions):
                self.satisfied_at[key] = when

    def assigned_at(self, key: str) -> float | None:
        at = self.satisfied_at.get(key)
        if at is None or not self.predicate.needs_ring:
            return at
        return None if self.ring_at is None else max(at, self.ring_at)

    def assigned(self) -> int:
        if self.predicate.needs_ring and self.ring_at is None:
            return 0
        return len(self.satisfied_at)

    def latencies(self, since: Mapping[str, float] | None = None) -> list[float]:
        """Seconds from each stream's create (or `since[key]`) to its assignment."""
        starts = self.created if since is None else since
        out = []
        for key, start in starts.items():
            at = self.assigned_at(key)
            if at is not None:
                out.append(max(0.0, at - start))
        return out

    def last_assigned(self, keys: Iterable[str]) -> float | None:
        """When the last of `keys` was assigned; None while any is not."""
        last = None
        for key in keys:
            at = self.assigned_at(key)
            if at is None:
                return None
            last = at if last is None else max(last, at)
        return last


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else None
    return {
        "p50": statistics.median(ordered),
        "p99": cuts[98] if cuts else ordered[0],
        "max": ordered[-1],
    }


async def follow_streams(api: bench_api.BenchApi, tracker: Tracker) -> None:
    """List then watch every CameraStream, feeding the tracker; runs until cancelled."""
    metadata_only = not tracker.predicate.needs_status
    list_accept = bench_api.METADATA_LIST if metadata_only else "application/json"
    watch_accept = bench_api.METADATA_WATCH if metadata_only else "application/json"
    path = kubeapi.stream_path(None)
    extract = tracker.predicate.extract
    version = ""
    while True:
        try:
            if not version:
                listed = await bench_api.list_paged(api, path, accept=list_accept)
                now = time.time()
                for obj in listed.items:
                    tracker.observe(stream_key(obj), extract(obj), now)
                version = listed.resource_version
            async for kind, obj, _ in api.watch(
                path, resource_version=version, accept=watch_accept
            ):
                if kind == "ERROR":
                    log.info("stream watch: %s; listing again", str(obj)[:200])
                    version = ""  # 410 Gone or worse: start over from a LIST
                    break
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED"):
                    tracker.observe(stream_key(obj), extract(obj), time.time())
                elif kind == "DELETED":
                    tracker.forget(stream_key(obj))
        except (OSError, TimeoutError, RuntimeError) as exc:
            log.warning("stream watch: %s; resuming", exc)
            await asyncio.sleep(1.0)
        except Exception as exc:  # aiohttp.ClientError and friends: resume, never die
            log.warning("stream watch: %s: %s; resuming", type(exc).__name__, exc)
            await asyncio.sleep(1.0)


async def follow_ring(
    api: bench_api.BenchApi,
    tracker: Tracker,
    *,
    namespace: str,
    name: str,
    up: frozenset[str],
    period: float = 1.0,
    on_data: Callable[[dict[str, str] | None], None] | None = None,
) -> None:
    """GET the ring ConfigMap every `period` seconds; runs until cancelled.

    `on_data` also gets each read (the fake workers confirm handoffs from it)."""
    path = kubeapi.configmap_path(namespace, name)
    while True:
        try:
            answer = await api.request("GET", path, time_limit=30)
            data = answer.body.get("data") if answer.status == 200 else None
            partitions = int(data["partitions"]) if data and "partitions" in data else None
            complete = ring_complete(data, tracker.partitions, up)
            tracker.ring_seen(complete, partitions, time.time())
            if on_data is not None:
                on_data(data)
        except Exception as exc:  # a slow or busy API server must not end the run
            log.warning("ring poll: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(period)
