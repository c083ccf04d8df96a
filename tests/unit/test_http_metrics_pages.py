"""Stream metrics (camstream_worker.metrics) and the page/JSON views (pages.py).

Pure: statuses are plain data, the clock is fixed, the registry is private.
The same names are checked end to end, over HTTP, in tests/media/test_http_server.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from camstream.spec import StreamKey
from camstream_worker.metrics import streams as metrics
from camstream_worker.servers.http import pages
from camstream_worker.state import Phase, StreamStatus

NOW = 1_700_000_000.0
A = StreamKey("ns", "a")
B = StreamKey("ns", "b")

METRIC_NAMES = {
    "camstream_streams",
    "camstream_stream_up",
    "camstream_stream_phase",
    "camstream_stream_bytes_in",
    "camstream_stream_segments",
    "camstream_stream_reconnects",
    "camstream_stream_segment_age_seconds",
}


@dataclass
class Directory:
    items: list[StreamStatus] = field(default_factory=list)

    def statuses(self) -> list[StreamStatus]:
        return list(self.items)

    def status(self, key: StreamKey) -> StreamStatus | None:
        return next((s for s in self.items if s.key == key), None)


def scrape(directory: Directory) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    metrics.register_stream_metrics(directory, registry, clock=lambda: NOW)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_empty_worker_reports_zero_streams_in_every_phase() -> None:
    samples = scrape(Directory())
    assert samples == {("camstream_streams", (("phase", phase.value),)): 0.0 for phase in Phase}


def test_scrape_reads_statuses_at_scrape_time() -> None:
    directory = Directory([StreamStatus(A, "rtsp", Phase.CONNECTING)])
    registry = CollectorRegistry()
    metrics.register_stream_metrics(directory, registry, clock=lambda: NOW)
    first = generate_latest(registry).decode()
    directory.items = [
        StreamStatus(A, "rtsp", Phase.LIVE, bytes_in=10, segments=1, last_segment_at=NOW - 2)
    ]
    second = generate_latest(registry).decode()
    assert 'camstream_stream_up{name="a",namespace="ns"} 0.0' in first
    assert 'camstream_stream_up{name="a",namespace="ns"} 1.0' in second
    assert 'camstream_stream_segment_age_seconds{name="a",namespace="ns"} 2.0' in second


def test_values_and_one_hot_phase() -> None:
    live = StreamStatus(
        A, "rtmp", Phase.LIVE, bytes_in=5000, segments=9, reconnects=1, last_segment_at=NOW - 1.5
    )
    failed = StreamStatus(B, "rtsp", Phase.FAILED, reason="Unauthorized", reconnects=4)
    samples = scrape(Directory([live, failed]))
    a, b = (("name", "a"), ("namespace", "ns")), (("name", "b"), ("namespace", "ns"))
    assert samples[("camstream_streams", (("phase", "Live"),))] == 1
    assert samples[("camstream_streams", (("phase", "Failed"),))] == 1
    assert samples[("camstream_stream_up", a)] == 1
    assert samples[("camstream_stream_up", b)] == 0
    assert samples[("camstream_stream_bytes_in_total", a)] == 5000
    assert samples[("camstream_stream_segments_total", a)] == 9
    assert samples[("camstream_stream_reconnects_total", b)] == 4
    assert samples[("camstream_stream_segment_age_seconds", a)] == 1.5
    assert ("camstream_stream_segment_age_seconds", b) not in samples
    for key, labels in (("Live", a), ("Failed", b)):
        phases = {
            dict(lbls)["phase"]: v
            for (name, lbls), v in samples.items()
            if name == "camstream_stream_phase" and dict(lbls)["name"] == dict(labels)["name"]
        }
        assert phases == {p.value: (1.0 if p.value == key else 0.0) for p in Phase}


def test_metric_names_and_labels_are_fixed() -> None:
    registry = CollectorRegistry()
    status = StreamStatus(A, "rtsp", Phase.LIVE, reason="r", message="m", last_segment_at=NOW)
    metrics.register_stream_metrics(Directory([status]), registry, clock=lambda: NOW)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert {f.name for f in families} == METRIC_NAMES
    labels = {label for f in families for s in f.samples for label in s.labels}
    assert labels == {"namespace", "name", "phase"}  # never reason, message, URLs or keys


def test_segment_age_is_never_negative() -> None:
    ahead = StreamStatus(A, "rtsp", Phase.LIVE, last_segment_at=NOW + 30)  # clock stepped back
    samples = scrape(Directory([ahead]))
    assert (
        samples[("camstream_stream_segment_age_seconds", (("name", "a"), ("namespace", "ns")))] == 0
    )


def test_status_view_is_json_ready() -> None:
    status = StreamStatus(
        A,
        "rtsp",
        Phase.LIVE,
        since=NOW - 10,
        last_segment_at=NOW - 0.25,
        video_codec="hevc",
        audio_codec="aac",
        width=1280,
        height=720,
        renditions=("720p", "360p"),
        thumbnail=True,
    )
    view = pages.status_view(status, now=NOW)
    assert view["key"] == "ns/a" and view["phase"] == "Live"
    assert view["segment_age"] == 0.25
    assert view["codecs"] == {"video": "hevc", "audio": "aac"}
    assert view["size"] == {"width": 1280, "height": 720}
    assert view["renditions"] == ["720p", "360p"]
    assert view["playback"] == "/streams/ns/a/index.m3u8"
    assert view["thumbnail"] == "/streams/ns/a/thumbnail.jpg"


def test_pages_escape_untrusted_text_and_use_only_local_relative_links() -> None:
    nasty = StreamStatus(
        A, "rtsp", Phase.FAILED, reason="BadSource", message='<script>alert("x")</script>'
    )
    for page in (pages.player_page(nasty, now=NOW), pages.index_page([nasty], now=NOW)):
        assert "<script>alert" not in page
        assert "://" not in page  # no CDN, no absolute URL
    player = pages.player_page(nasty, now=NOW)
    assert 'src="../../../static/hls.min.js"' in player
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in player


def test_index_page_limits_live_players() -> None:
    many = [
        StreamStatus(StreamKey("ns", f"cam-{i:03d}"), "rtsp", Phase.LIVE)
        for i in range(pages.INDEX_PLAYERS + 5)
    ]
    page = pages.index_page(many, now=NOW)
    assert page.count("<video") == pages.INDEX_PLAYERS
    assert page.count("<tr data-key=") == len(many)
