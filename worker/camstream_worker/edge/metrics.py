"""The edge's Prometheus figures (docs/metrics.md lists them).

Who calls this: the edge (server.py) makes one `EdgeMetrics`; its sessions
count into it; cli.py serves `registry` on /metrics. No label carries a
stream, a key or an address: the figures are per edge pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camstream_worker.metrics.worker import RTMP_REFUSAL_REASONS, SRT_REFUSAL_REASONS

__all__ = ["EdgeMetrics"]


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.publishes = Counter(
            "camstream_edge_publishes",
            "Camera publishes the edge accepted (a camera's reconnect counts again)",
            registry=r,
        )
        self.bytes_in = Counter(
            "camstream_edge_received_bytes", "Bytes received from cameras", registry=r
        )
        self.bytes_out = Counter(
            "camstream_edge_relayed_bytes", "Bytes written to workers (all owners)", registry=r
        )
        self.owner_connects = Counter(
            "camstream_edge_owner_reconnects",
            "Publishes to a worker opened after a camera's first (a new owner, a lost one back)",
            registry=r,
        )
        self.owner_lost = Counter(
            "camstream_edge_owner_lost",
            "Connections to a worker that broke while the camera stayed",
            registry=r,
        )
        self.handoffs_forked = Counter(
            "camstream_edge_handoffs_forked",
            "Streams fed to a handoff's target beside its source (make-before-break)",
            registry=r,
        )
        self.overflows = Counter(
            "camstream_edge_owner_overflows",
            "Times a worker fell over the edge's per-owner buffer and restarted at a keyframe",
            registry=r,
        )

    def watch(
        self,
        *,
        stats: Callable[[], Mapping[str, int]],
    ) -> None:
        """Report the edge's live figures (`Edge.stats`) at each scrape."""
        self.registry.register(_Live(stats))

    def watch_srt(self, *, stats: Callable[[], Mapping[str, int]]) -> None:
        """Report the SRT port's figures (`SrtRelay.stats`) at each scrape (with --srt-port)."""
        self.registry.register(_LiveSrt(stats))


class _Live(Collector):
    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily(
            "camstream_edge_connections",
            "Camera connections open now (greeting or publishing)",
            value=stats.get("connections", 0),
        )
        yield GaugeMetricFamily(
            "camstream_edge_publishing",
            "Cameras publishing through the edge now",
            value=stats.get("publishing", 0),
        )
        yield GaugeMetricFamily(
            "camstream_edge_accepting",
            "1 while the edge accepts new cameras (0: draining or out of descriptors)",
            value=stats.get("accepting", 0),
        )
        refused = CounterMetricFamily(
            "camstream_edge_refused", "Camera connections refused or dropped", labels=["reason"]
        )
        for reason in RTMP_REFUSAL_REASONS:
            refused.add_metric([reason], stats.get(f"refused_{reason}", 0))
        yield refused


class _LiveSrt(Collector):
    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily(
            "camstream_edge_srt_connections",
            "SRT publishers connected or handshaking now",
            value=stats.get("connections", 0) + stats.get("handshaking", 0),
        )
        yield GaugeMetricFamily(
            "camstream_edge_srt_relays", "SRT publishers relayed to workers now",
            value=stats.get("relays", 0),
        )  # fmt: skip
        yield CounterMetricFamily(
            "camstream_edge_srt_received_bytes",
            "Bytes received from SRT cameras (decrypted MPEG-TS)",
            value=stats.get("bytes_received", 0),
        )
        yield GaugeMetricFamily(
            "camstream_edge_srt_passphrases",
            "Streams whose SRT passphrase the edge holds (positive cache entries)",
            value=stats.get("passphrases", 0),
        )
        yield GaugeMetricFamily(
            "camstream_edge_srt_lookups",
            "Passphrase lookups in flight",
            value=stats.get("lookups", 0),
        )
        yield CounterMetricFamily(
            "camstream_edge_srt_lookups_busy",
            "Passphrase lookups not started because the in-flight cap was reached",
            value=stats.get("lookup_busy", 0),
        )
        yield CounterMetricFamily(
            "camstream_edge_srt_lookup_failures",
            "Passphrase lookups the API server did not answer",
            value=stats.get("lookup_failures", 0),
        )
        refused = CounterMetricFamily(
            "camstream_edge_srt_refused",
            "SRT publishers refused or dropped, by reason",
            labels=["reason"],
        )
        for reason in SRT_REFUSAL_REASONS:
            refused.add_metric([reason], stats.get(f"refused_{reason}", 0))
        yield refused
        reports = CounterMetricFamily(
            "camstream_edge_srt_refusal_reports",
            "Refused SRT publishers reported to their stream's owner (for its status), by outcome",
            labels=["outcome"],
        )
        for outcome in ("noted", "failed", "dropped"):
            reports.add_metric([outcome], stats.get(f"reports_{outcome}", 0))
        yield reports
