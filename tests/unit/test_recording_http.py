"""The recordings routes' pure parts: time windows and their limits, VOD playlist text."""

from __future__ import annotations

import pytest

from camstream.recording.groupfile import Entry
from camstream.recording.timeline import Chosen, Piece
from camstream_worker.outputs.recording import vod
from camstream_worker.servers.http.recordings import (
    MAX_CLIP_SECONDS,
    parse_time,
    time_window,
)
from tests.harness.hlscheck import parse_media_playlist

NOW = 1_796_000_000_000


def test_times_are_iso_8601_or_unix_seconds() -> None:
    assert parse_time("1796000000.5", "from") == 1_796_000_000_500
    assert parse_time("2026-12-01T10:00:00Z", "from") == parse_time("1796119200", "from")
    assert parse_time("2026-12-01T11:00:00+01:00", "to") == parse_time("1796119200", "to")
    assert parse_time("2026-12-01T10:00:00", "to") == 1_796_119_200_000  # no zone: UTC


@pytest.mark.parametrize("text", ["yesterday", "inf", "nan", "-5", "1e300", ""])
def test_bad_times_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"^from: "):
        parse_time(text, "from")


def test_windows_have_defaults_and_limits() -> None:
    assert time_window({}, default_seconds=3600, max_seconds=7200, now_ms=NOW) == (
        NOW - 3_600_000,
        NOW,
    )
    clip = {"from": "1796000000", "to": str(1796000000 + MAX_CLIP_SECONDS)}
    assert time_window(clip, default_seconds=None, max_seconds=MAX_CLIP_SECONDS, now_ms=NOW)
    for query, message in [
        ({"from": "10", "to": "5"}, "after"),
        ({"from": "0", "to": str(MAX_CLIP_SECONDS + 1)}, f"at most {MAX_CLIP_SECONDS} s"),
        ({"to": "10"}, "from: required"),
        ({"from": "10"}, "to: required"),
    ]:
        with pytest.raises(ValueError, match=message):
            time_window(query, default_seconds=None, max_seconds=MAX_CLIP_SECONDS, now_ms=NOW)


def test_vod_playlist_lists_byte_ranges_with_program_date_times() -> None:
    key = "ns/cam/2026120110/1796119200000-0004000-w0.ts"
    other = "ns/cam/2026120110/1796119204000-0002000-w1.ts"
    chosen = [
        Chosen(Piece(key, Entry(0, 1000, 2000, 1_796_119_200_000, 7), "w0"), False),
        Chosen(Piece(key, Entry(1000, 1200, 2000, 1_796_119_202_000, 8), "w0"), False),
        Chosen(Piece(other, Entry(0, 900, 2000, 1_796_119_204_000, 20), "w1"), True),
    ]
    text = vod.render(chosen)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXT-X-BYTERANGE:1200@1000" in text and "#EXT-X-VERSION:4" in text
    playlist = parse_media_playlist(text)
    assert [s.uri for s in playlist.segments] == [
        "objects/2026120110/1796119200000-0004000-w0.ts",
        "objects/2026120110/1796119200000-0004000-w0.ts",
        "objects/2026120110/1796119204000-0002000-w1.ts",
    ]
    assert [s.discontinuity for s in playlist.segments] == [False, False, True]
    assert playlist.segments[0].program_date_time is not None
    assert playlist.segments[0].program_date_time.isoformat().startswith("2026-12-01T10:00:00")
