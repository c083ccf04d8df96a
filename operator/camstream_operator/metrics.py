"""The operator's Prometheus metrics and the small HTTP server that serves them.

Who calls this: cli.py starts `serve` on the liveness port (the chart probes
/healthz and scrapes /metrics there) and hands `OperatorMetrics` to the ring
reconciler, which calls `record_round` after each round. Names are the
published ones (docs/metrics.md; dashboards and alerts use them):

    camstream_ring_version               gauge, version of the ring document last seen
    camstream_ring_members               gauge, workers in the ring (up)
    camstream_handoffs_total{result}     counter, finished handoffs: ok, timeout
                                         (an attempt retried), rolled_back, cancelled
    camstream_handoff_duration_seconds   histogram, recorded transfer → old owner released
    camstream_operator_leader            gauge, 1 on the replica holding the Lease
    camstream_ring_workers{state}        gauge, workers by state: up, silent, frozen, leaving
    camstream_streams_unlabelled         gauge, streams still lacking their partition label
    camstream_streams_labelled_total     counter, label patches by the fallback labeller
    camstream_event_loop_lag_seconds     histogram, how late the event loop woke a 50 ms timer
    camstream_event_loop_lag_max_seconds gauge, the worst lag since start
    camstream_event_loop_stall_seconds   histogram, that lag less the time the loop's thread
                                         waited for a CPU: the stall our own code caused
    camstream_event_loop_stall_max_seconds gauge, the worst stall since start
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from camstream.handoff import Event, EventKind, Handoff, RingDoc

from .membership import Membership

_RESULTS = {
    EventKind.HANDED_OFF: "ok",
    EventKind.RETRIED: "timeout",
    EventKind.ROLLED_BACK: "rolled_back",
    EventKind.CANCELLED: "cancelled",
}


class OperatorMetrics:
    def __init__(self, is_leader: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        self._ring_version = Gauge(
            "camstream_ring_version", "Version of the ring document", registry=self.registry
        )
        self._members = Gauge(
            "camstream_ring_members", "Workers in the ring", registry=self.registry
        )
        self._handoffs = Counter(
            "camstream_handoffs",
            "Finished partition handoffs by result",
            ["result"],
            registry=self.registry,
        )
        for result in _RESULTS.values():
            self._handoffs.labels(result)  # every series exists from the start (rate() needs it)
        self._duration = Histogram(
            "camstream_handoff_duration_seconds",
            "From recording a transfer to its completion",
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=self.registry,
        )
        leader = Gauge(
            "camstream_operator_leader",
            "1 on the replica holding the leader Lease",
            registry=self.registry,
        )
        leader.set_function(lambda: 1.0 if is_leader() else 0.0)
        self._workers = Gauge(
            "camstream_ring_workers",
            "Workers by state as this replica sees them",
            ["state"],
            registry=self.registry,
        )
        self._unlabelled = Gauge(
            "camstream_streams_unlabelled",
            "CameraStreams still lacking their partition label",
            registry=self.registry,
        )
        self._labelled = Counter(
            "camstream_streams_labelled",
            "Partition-label patches written by the fallback labeller",
            registry=self.registry,
        )
        self._labelled_seen = 0
        self.loop_lag = Histogram(
            "camstream_event_loop_lag_seconds",
            "How late the event loop woke a 50 ms timer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.loop_stall = Histogram(
            "camstream_event_loop_stall_seconds",
            "Event-loop lag less the time its thread waited for a CPU",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self._stall_max = 0.0
        self.loop_stall_max = Gauge(
            "camstream_event_loop_stall_max_seconds",
            "The worst event-loop stall since start",
            registry=self.registry,
        )
        self._lag_max = 0.0
        self.loop_lag_max = Gauge(
            "camstream_event_loop_lag_max_seconds",
            "The worst event-loop lag since start",
            registry=self.registry,
        )

    def record_members(self, members: Membership, *, frozen: int) -> None:
        self._workers.labels("up").set(len(members.up - members.leaving))
        self._workers.labels("leaving").set(len(members.leaving))
        self._workers.labels("silent").set(len(members.silent))
        self._workers.labels("frozen").set(frozen)

    def record_labeller(self, backlog: int, labelled: int) -> None:
        self._unlabelled.set(backlog)
        if labelled > self._labelled_seen:
            self._labelled.inc(labelled - self._labelled_seen)
            self._labelled_seen = labelled

    def record_loop_lag(self, lag: float, stall: float) -> None:
        self.loop_lag.observe(lag)
        self.loop_stall.observe(stall)
        if lag > self._lag_max:
            self._lag_max = lag
            self.loop_lag_max.set(lag)
        if stall > self._stall_max:
            self._stall_max = stall
            self.loop_stall_max.set(stall)

    def record_round(
        self,
        doc: RingDoc,
        members: int,
        events: Iterable[Event] = (),
        before: Iterable[Handoff] = (),
        now: float | None = None,
    ) -> None:
        """After a round: the document, its membership and what finished in it."""
        now = time.time() if now is None else now
        self._ring_version.set(doc.version)
        self._members.set(members)
        started = {(h.partition, h.target): h.started for h in before}
        for event in events:
            result = _RESULTS.get(event.kind)
            if result is None:
                continue
            self._handoffs.labels(result).inc()
            if event.kind is EventKind.HANDED_OFF:
                begun = started.get((event.partition, event.target))
                if begun is not None:
                    self._duration.observe(max(0.0, now - begun))


async def serve(
    metrics: OperatorMetrics, host: str, port: int, healthy: Callable[[], bool]
) -> web.AppRunner:
    """/healthz (the liveness probe) and /metrics on one port."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n") if healthy() else web.Response(status=503, text="stuck\n")

    async def scrape(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
