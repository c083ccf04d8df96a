"""Prometheus metrics of a worker's streams, computed at scrape time.

Who calls this: servers/http/server.make_app registers a `StreamCollector` in
the registry it serves on /metrics. Nothing updates metrics per packet or per
segment: the collector reads `StreamDirectory.statuses()` (plain snapshots the
supervisor keeps anyway) whenever Prometheus scrapes, so the cost is one pass
over the worker's streams every scrape interval, whatever the bitrate. The
server hands it a `StatusSnapshot` taken on the event loop, because it
renders the text format in a thread.

The metric names are a published interface (dashboards and alerts use them);
keep them exactly:

    camstream_streams{phase}                             gauge, streams per phase
    camstream_stream_up{namespace,name}                  gauge, 1 when Live else 0
    camstream_stream_phase{namespace,name,phase}         gauge, 1 for the current phase, 0 others
    camstream_stream_bytes_in_total{namespace,name}      counter
    camstream_stream_segments_total{namespace,name}      counter
    camstream_stream_reconnects_total{namespace,name}    counter
    camstream_stream_segment_age_seconds{namespace,name} gauge, absent until a first segment

Labels are only the stream's namespace and name and the phase: bounded, and
free of URLs, hosts, users and keys by construction.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camstream.spec import StreamKey
from camstream_worker.state import Phase, StreamDirectory, StreamStatus

_STREAM_LABELS = ("namespace", "name")


class StreamCollector(Collector):
    """Turns the directory's current statuses into metric families on each scrape."""

    def __init__(self, directory: StreamDirectory, clock: Callable[[], float] = time.time) -> None:
        self._directory = directory
        self._clock = clock  # wall clock, the same one StreamStatus times use

    def describe(self) -> Iterator[Metric]:
        # Empty families: lets a registry check names at registration without
        # calling into the directory before the worker is up.
        return iter(_families([], 0.0))

    def collect(self) -> Iterator[Metric]:
        return iter(_families(self._directory.statuses(), self._clock()))


def _families(statuses: list[StreamStatus], now: float) -> list[Metric]:
    """All metric families for a snapshot of statuses taken at wall time `now`."""
    per_phase = Counter(s.phase for s in statuses)
    streams = GaugeMetricFamily(
        "camstream_streams", "Streams on this worker by phase.", labels=["phase"]
    )
    # Every phase, zeros included, so a phase emptying is a 0 and not a gap.
    for phase in Phase:
        streams.add_metric([phase.value], per_phase.get(phase, 0))

    up = GaugeMetricFamily(
        "camstream_stream_up", "1 when the stream is Live, else 0.", labels=_STREAM_LABELS
    )
    phase_g = GaugeMetricFamily(
        "camstream_stream_phase",
        "The stream's current phase (1) among all phases (0).",
        labels=[*_STREAM_LABELS, "phase"],
    )
    bytes_in = CounterMetricFamily(
        "camstream_stream_bytes_in", "Bytes received from the source.", labels=_STREAM_LABELS
    )
    segments = CounterMetricFamily(
        "camstream_stream_segments", "HLS segments written.", labels=_STREAM_LABELS
    )
    reconnects = CounterMetricFamily(
        "camstream_stream_reconnects", "Reconnections to the source.", labels=_STREAM_LABELS
    )
    age = GaugeMetricFamily(
        "camstream_stream_segment_age_seconds",
        "Seconds since the newest HLS segment was written.",
        labels=_STREAM_LABELS,
    )
    for status in statuses:
        labels = [status.key.namespace, status.key.name]
        up.add_metric(labels, 1 if status.phase is Phase.LIVE else 0)
        for phase in Phase:
            phase_g.add_metric([*labels, phase.value], 1 if status.phase is phase else 0)
        bytes_in.add_metric(labels, status.bytes_in)
        segments.add_metric(labels, status.segments)
        reconnects.add_metric(labels, status.reconnects)
        if status.last_segment_at is not None:
            # Clamped: a clock step backwards must not report a negative age.
            age.add_metric(labels, max(0.0, now - status.last_segment_at))
    return [streams, up, phase_g, bytes_in, segments, reconnects, age]


class StatusSnapshot:
    """A StreamDirectory frozen at the last `take()`.

    For exporters that render in another thread: the live directory belongs
    to the event loop, so the loop calls `take()` and the thread's collector
    reads the copy.
    """

    def __init__(self, directory: StreamDirectory) -> None:
        self._directory = directory
        self._statuses: list[StreamStatus] = []

    def take(self) -> None:
        self._statuses = self._directory.statuses()

    def statuses(self) -> list[StreamStatus]:
        return self._statuses

    def status(self, key: StreamKey) -> StreamStatus | None:
        return next((s for s in self._statuses if s.key == key), None)


def register_stream_metrics(
    directory: StreamDirectory,
    registry: CollectorRegistry,
    clock: Callable[[], float] = time.time,
) -> StreamCollector:
    """Add the stream collector to a registry; returns it so callers can unregister."""
    collector = StreamCollector(directory, clock)
    registry.register(collector)
    return collector
