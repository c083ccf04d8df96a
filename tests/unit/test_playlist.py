"""Playlist rendering and the sliding window (pure), by properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.outputs.hls.playlist import (
    Segment,
    Variant,
    render_master_playlist,
    render_media_playlist,
    slide_window,
    target_duration,
)

durations = st.floats(min_value=0.04, max_value=12.0, allow_nan=False)
histories = st.lists(st.tuples(durations, st.booleans()), min_size=1, max_size=60)


def _segments(history: list[tuple[float, bool]], start: int = 0) -> list[Segment]:
    return [
        Segment(sequence=start + i, uri=f"seg{start + i}.ts", duration=d, discontinuity=disc)
        for i, (d, disc) in enumerate(history)
    ]


@given(histories, st.integers(min_value=2, max_value=10), st.integers(min_value=0, max_value=10**6))
def test_window_keeps_the_newest_and_counts_dropped_discontinuities(history, window, start):
    segments = _segments(history, start)
    kept, dropped, dseq = slide_window(segments, window, 0)
    assert list(kept) == segments[-window:]
    assert list(dropped) + list(kept) == segments
    assert dseq == sum(s.discontinuity for s in dropped)


@given(histories, st.integers(min_value=2, max_value=10))
def test_sliding_one_segment_at_a_time_equals_sliding_all_at_once(history, window):
    segments = _segments(history)
    listed: tuple[Segment, ...] = ()
    dseq = 0
    for segment in segments:
        listed, _, dseq = slide_window((*listed, segment), window, dseq)
    assert slide_window(segments, window, 0)[::2] == (listed, dseq)


@given(histories, st.integers(min_value=1, max_value=10))
def test_target_duration_covers_every_rounded_extinf(history, floor):
    segments = _segments(history)
    target = target_duration(segments, floor)
    assert target >= floor
    assert all(round(s.duration) <= target for s in segments)


@given(histories)
def test_media_playlist_lists_segments_in_order_with_their_tags(history):
    segments = _segments(history, start=41)
    text = render_media_playlist(segments, target=12, discontinuity_sequence=3)
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-MEDIA-SEQUENCE:41" in lines
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:3" in lines
    uris = [line for line in lines if not line.startswith("#")]
    assert uris == [s.uri for s in segments]
    assert lines.count("#EXT-X-DISCONTINUITY") == sum(s.discontinuity for s in segments)
    for segment in segments:
        position = lines.index(segment.uri)
        assert lines[position - 1] == f"#EXTINF:{segment.duration:.3f},"
        if segment.discontinuity:
            assert "#EXT-X-DISCONTINUITY" in lines[position - 3 : position - 1]
    assert "#EXT-X-ENDLIST" not in lines


def test_program_date_time_is_utc_iso8601_with_milliseconds():
    segment = Segment(0, "seg0.ts", 2.0, program_date_time=1_700_000_000.25)
    text = render_media_playlist([segment], target=2, discontinuity_sequence=0)
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.250Z" in text


def test_master_playlist_orders_variants_by_bandwidth():
    text = render_master_playlist(
        [
            Variant("360p/index.m3u8", 900_000, 640, 360),
            Variant("720p/index.m3u8", 2_700_000, 1280, 720),
        ]
    )
    lines = text.splitlines()
    assert lines[3].startswith("#EXT-X-STREAM-INF:BANDWIDTH=2700000,RESOLUTION=1280x720")
    assert lines[4] == "720p/index.m3u8"
    assert lines[6] == "360p/index.m3u8"


def test_fmp4_playlist_names_each_init_segment_where_it_starts_to_apply():
    segments = [
        Segment(7, "seg7.m4s", 2.0, init_uri="init5.mp4"),
        Segment(8, "seg8.m4s", 2.0, init_uri="init5.mp4"),
        Segment(9, "seg9.m4s", 2.0, discontinuity=True, init_uri="init9.mp4"),
    ]
    lines = render_media_playlist(segments, target=2, discontinuity_sequence=0).splitlines()
    assert "#EXT-X-VERSION:7" in lines
    maps = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-MAP")]
    assert [lines[i] for i in maps] == ['#EXT-X-MAP:URI="init5.mp4"', '#EXT-X-MAP:URI="init9.mp4"']
    assert maps[0] < lines.index("seg7.m4s")
    assert lines.index("#EXT-X-DISCONTINUITY") < maps[1] < lines.index("seg9.m4s")
