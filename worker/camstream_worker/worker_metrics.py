"""Worker-level Prometheus metrics (the per-stream ones are in metrics.py).

Who calls this: standalone.py and cluster/cli.py build the /metrics registry
with `worker_registry`. Like the stream metrics, these are read at scrape
time from counters the RTMP server and the cluster agent keep anyway:

    camstream_rtmp_connections            gauge, RTMP connections open now
    camstream_rtmp_rejected_total{reason} counter, connections refused or dropped:
                                          unauthorized (unknown stream, wrong key),
                                          protocol (not RTMP, malformed), timeout
    camstream_worker_partitions           gauge, ring partitions this worker owns
                                          (cluster mode only)
    camstream_stream_double_serving_seconds_total
                                          counter, stream-seconds this worker's copies
                                          may have run after the ring moved them to
                                          another worker while it could not see the
                                          ring (cluster mode only; an upper bound)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RtmpStats = Callable[[], Mapping[str, int]]
_REJECTION_COUNTERS = (
    ("unauthorized", "rejected"),
    ("protocol", "protocol_errors"),
    ("timeout", "timeouts"),
)


class WorkerCollector(Collector):
    def __init__(
        self,
        rtmp_stats: RtmpStats,
        partitions: Callable[[], int] | None,
        double_serving: Callable[[], float] | None = None,
    ) -> None:
        self._rtmp_stats = rtmp_stats
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
        for reason, counter in _REJECTION_COUNTERS:
            rejected.add_metric([reason], stats.get(counter, 0))
        yield rejected
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


def worker_registry(
    rtmp_stats: RtmpStats,
    partitions: Callable[[], int] | None = None,
    double_serving: Callable[[], float] | None = None,
) -> CollectorRegistry:
    """A registry with the process collectors and the worker's own metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(WorkerCollector(rtmp_stats, partitions, double_serving))
    return registry


def add_stats(*parts: Mapping[str, int]) -> dict[str, int]:
    """Counters of several RTMP servers (a sharded worker's children) added up."""
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total
