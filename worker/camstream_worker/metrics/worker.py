"""Worker-level Prometheus metrics (the per-stream ones are in streams.py).

Who calls this: app/standalone.py and cluster/cli.py build the /metrics
registry with `worker_registry`; the pool adds up its processes' RTMP counters
with `add_stats`. Like the stream metrics, these are read at scrape
time from counters the RTMP server and the cluster agent keep anyway:

    camstream_rtmp_connections            gauge, RTMP connections open now
    camstream_rtmp_rejected_total{reason} counter, connections refused or dropped,
                                          reason one of RTMP_REFUSAL_REASONS below
    camstream_rtmp_accepting              gauge, 1 while the RTMP port accepts
                                          connections (0: out of file descriptors)
    camstream_srt_connections             gauge, SRT publishers connected now
    camstream_srt_handshakes              gauge, SRT handshakes past the stream ID, not done
    camstream_srt_received_bytes_total    counter, bytes SRT publishers delivered
    camstream_srt_rejected_total{reason}  counter, SRT publishers refused or dropped,
                                          reason one of SRT_REFUSAL_REASONS below
                                          (the SRT families are all 0 without an SRT port)
    camstream_worker_partitions           gauge, ring partitions this worker owns
                                          (cluster mode only)
    camstream_stream_double_serving_seconds_total
                                          counter, stream-seconds this worker's copies
                                          may have run after the ring moved them to
                                          another worker while it could not see the
                                          ring (cluster mode only; an upper bound)

The RTMP servers report each refusal reason as the counter
``refused_<reason>`` of their stats (servers/rtmp/refusals.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Re-exported: the reasons are kept apart for engine processes (reasons.py).
from camstream_worker.metrics.reasons import RTMP_REFUSAL_REASONS as RTMP_REFUSAL_REASONS

RtmpStats = Callable[[], Mapping[str, int]]

# The label values of camstream_srt_rejected_total (docs/threat-model-srt.md).
SRT_REFUSAL_REASONS: Mapping[str, str] = {
    "stream_id": "a stream ID that is malformed, asks to play, or names no SRT stream here",
    "unauthorized": "the handshake failed after the stream ID: wrong or missing passphrase",
    "capacity": "the listener's connection cap is reached",
    "per_address": "too many connections from one address",
    "timeout": "a publisher that sends nothing for the idle timeout",
    "bitrate": "a publisher above the bitrate cap",
    "buffer": "bytes waiting for a stream that does not take them, over the cap",
    "lookup": "an edge still looking up the stream's passphrase, or with too many lookups "
    "in flight (the caller is told to retry)",
    "draining": "an edge that is draining (the caller is told to retry, elsewhere)",
}


class WorkerCollector(Collector):
    def __init__(
        self,
        rtmp_stats: RtmpStats,
        partitions: Callable[[], int] | None,
        double_serving: Callable[[], float] | None = None,
        srt_stats: RtmpStats | None = None,
    ) -> None:
        self._rtmp_stats = rtmp_stats
        self._srt_stats = srt_stats
        self._partitions = partitions
        self._double_serving = double_serving

    def collect(self) -> Iterator[Metric]:
        stats = self._rtmp_stats()
        yield GaugeMetricFamily(
            "camstream_rtmp_connections",
            "RTMP connections open now",
            value=stats.get("connections", 0),
        )
        rejected = CounterMetricFamily(
            "camstream_rtmp_rejected", "RTMP connections refused or dropped", labels=["reason"]
        )
        for reason in RTMP_REFUSAL_REASONS:
            rejected.add_metric([reason], stats.get(f"refused_{reason}", 0))
        yield rejected
        if "accepting" in stats:
            yield GaugeMetricFamily(
                "camstream_rtmp_accepting",
                "1 while the RTMP port accepts connections",
                value=stats["accepting"],
            )
        # Exported without an SRT port too (all zero), as the recording
        # metrics are: dashboards, alerts and the chart's metrics contract
        # see the same series on every worker.
        yield from _srt_metrics(self._srt_stats() if self._srt_stats is not None else {})
        if self._partitions is not None:
            yield GaugeMetricFamily(
                "camstream_worker_partitions",
                "Ring partitions this worker owns",
                value=self._partitions(),
            )
        if self._double_serving is not None:
            yield CounterMetricFamily(
                "camstream_stream_double_serving_seconds",
                "Stream-seconds this worker's copies may have run after the ring had moved "
                "them to another worker while this one could not see the ring (upper bound)",
                value=self._double_serving(),
            )


def _srt_metrics(stats: Mapping[str, int]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "camstream_srt_connections",
        "SRT publishers connected now",
        value=stats.get("connections", 0),
    )
    yield GaugeMetricFamily(
        "camstream_srt_handshakes",
        "SRT handshakes past the stream ID and not completed yet",
        value=stats.get("handshaking", 0),
    )
    yield CounterMetricFamily(
        "camstream_srt_received_bytes",
        "Bytes SRT publishers delivered",
        value=stats.get("bytes_received", 0),
    )
    rejected = CounterMetricFamily(
        "camstream_srt_rejected", "SRT publishers refused or dropped", labels=["reason"]
    )
    for reason in SRT_REFUSAL_REASONS:
        rejected.add_metric([reason], stats.get(f"refused_{reason}", 0))
    yield rejected
    legs = CounterMetricFamily(
        "camstream_srt_edge_legs",
        "Connections from ingest edges carrying an SRT camera (TCP), by outcome",
        labels=["outcome"],
    )
    for outcome in ("accepted", "malformed", "unauthorized", "capacity"):
        name = "leg_accepted" if outcome == "accepted" else f"leg_refused_{outcome}"
        legs.add_metric([outcome], stats.get(name, 0))
    yield legs


def worker_registry(
    rtmp_stats: RtmpStats,
    partitions: Callable[[], int] | None = None,
    double_serving: Callable[[], float] | None = None,
    srt_stats: RtmpStats | None = None,
) -> CollectorRegistry:
    """A registry with the process collectors and the worker's own metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(WorkerCollector(rtmp_stats, partitions, double_serving, srt_stats))
    return registry


def add_stats(*parts: Mapping[str, int]) -> dict[str, int]:
    """Counters of several RTMP servers (a sharded worker's children) added up."""
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total
