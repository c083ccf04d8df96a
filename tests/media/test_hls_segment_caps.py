"""The HLS writer's segment caps and write failures, on real H.264 packets (issue 8).

A publisher that never sends another keyframe (or a camera whose keyframe
interval is longer than the cap) gets segments cut at the duration cap; one
that sends too much too fast loses packets at the byte cap rather than grow a
segment without bound. A segment that cannot be written (no descriptor left,
disk full) is dropped and the stream goes on. The wall clock is injected, so
time is controlled.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from camstream.spec import HlsOptions
from camstream_worker.outputs.hls.writer import (
    MAX_JOINED_PACKETS,
    HlsWriter,
    SegmentWritten,
)
from tests.harness.cameras import make_clip
from tests.harness.hlscheck import parse_media_playlist

pytestmark = pytest.mark.media


def packets_of(clip: Path) -> tuple[av.container.InputContainer, list[av.Packet]]:
    container = av.open(str(clip))
    video = container.streams.video[0]
    return container, [p for p in container.demux(video) if p.dts is not None]


def restamped(packet: av.Packet, dts: int, *, keyframe: bool) -> av.Packet:
    """A copy of `packet` at `dts` (the writer keeps the packets it is given)."""
    copy = av.Packet(bytes(packet))
    copy.time_base = packet.time_base
    copy.dts, copy.pts = dts, dts + (packet.pts - packet.dts)
    copy.is_keyframe = keyframe
    return copy


def test_no_keyframe_for_longer_than_the_cap_cuts_the_segment_anyway(tmp_path: Path) -> None:
    clip = make_clip(seconds=4)  # 25 fps, a keyframe every 2 s
    written: list[SegmentWritten] = []
    now = [1000.0]
    writer = HlsWriter(
        tmp_path,
        HlsOptions(segment_seconds=2, window_segments=3),
        on_segment=written.append,
        wall_clock=lambda: now[0],
    )
    assert writer.max_segment_seconds == 15.0
    container, packets = packets_of(clip)
    with container:
        writer.begin([container.streams.video[0]])
        span = packets[-1].dts - packets[0].dts + (packets[1].dts - packets[0].dts)
        first = True
        for loop in range(10):  # 40 s of media, one keyframe at the start only
            for packet in packets:
                copy = restamped(packet, packet.dts + loop * span, keyframe=first)
                first = False
                now[0] = 1000.0 + float(copy.dts * copy.time_base)
                writer.write(0, copy)
        playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
        assert [w.forced for w in written] == [True, True]
        assert [round(w.duration) for w in written] == [15, 15]
        assert writer.forced_cuts == 2
        assert not playlist.independent_segments
        assert playlist.target_duration == 15
        # The first segment starts on the keyframe and decodes; the next do not start on one.
        with av.open(str(tmp_path / playlist.segments[0].uri)) as segment:
            assert next(segment.demux(video=0)).is_keyframe
        # Keyframes again: once the forced segments leave the window, the tag is back.
        for loop in range(10, 14):
            for packet in packets:
                copy = restamped(packet, packet.dts + loop * span, keyframe=packet.is_keyframe)
                now[0] = 1000.0 + float(copy.dts * copy.time_base)
                writer.write(0, copy)
        assert parse_media_playlist((tmp_path / "index.m3u8").read_text()).independent_segments
        assert [w.forced for w in written[2:]] == [False] * (len(written) - 2)


def test_the_byte_cap_bounds_what_is_held_and_never_cuts_faster_than_the_clock(
    tmp_path: Path,
) -> None:
    clip = make_clip(seconds=4, bitrate_kbps=2000)
    written: list[SegmentWritten] = []
    now = [0.0]
    cap = 256 * 1024
    writer = HlsWriter(
        tmp_path,
        HlsOptions(segment_seconds=2),
        on_segment=written.append,
        wall_clock=lambda: now[0],
        max_segment_bytes=cap,
    )
    container, packets = packets_of(clip)
    with container:
        writer.begin([container.streams.video[0]])
        keyframe, others = packets[0], [p for p in packets[1:] if not p.is_keyframe]
        writer.write(0, keyframe)
        # Without a keyframe and faster than real time: the wall clock stands still.
        dts = keyframe.dts
        step = packets[1].dts - packets[0].dts
        for packet in others * 3:
            dts += step
            writer.write(0, restamped(packet, dts, keyframe=False))
        assert written == [] and writer.dropped_packets > 0  # dropped, not held
        now[0] = 2.0  # a segment duration later, the next packet cuts at the cap
        writer.write(0, restamped(others[0], dts + step, keyframe=False))
    assert [w.forced for w in written] == [True]
    assert cap * 0.8 < written[0].size < cap * 1.1  # MPEG-TS framing on top of the packets


def test_same_timestamp_joins_are_capped(tmp_path: Path) -> None:
    clip = make_clip(seconds=4)
    writer = HlsWriter(tmp_path, HlsOptions())
    container, packets = packets_of(clip)
    with container:
        writer.begin([container.streams.video[0]])
        writer.write(0, packets[0])
        for _ in range(3 * MAX_JOINED_PACKETS):
            piece = av.Packet(b"\x00\x00\x00\x01\x09")
            piece.time_base, piece.dts, piece.pts = packets[0].time_base, 0, 0
            writer.write(0, piece)
    assert writer.dropped_packets == 2 * MAX_JOINED_PACKETS + 1


def test_a_segment_that_cannot_be_written_is_dropped_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    clip = make_clip(seconds=12)
    folder = tmp_path / "stream"
    written: list[SegmentWritten] = []
    writer = HlsWriter(folder, HlsOptions(segment_seconds=2), on_segment=written.append)
    container, packets = packets_of(clip)
    with container:
        writer.begin([container.streams.video[0]])
        for packet in packets:
            seconds = float(packet.dts * packet.time_base)
            if 4.5 < seconds < 7.5:
                if folder.exists():  # the disk goes away for two segments' time
                    for path in folder.iterdir():
                        path.unlink()
                    folder.rmdir()
            elif not folder.exists():
                folder.mkdir()
            writer.write(0, packet)
    assert writer.failed_writes >= 1
    playlist = parse_media_playlist((folder / "index.m3u8").read_text())
    assert [s.sequence for s in playlist.segments] == list(range(len(playlist.segments)))
    assert playlist.segments[-1].discontinuity or playlist.discontinuity_positions
    assert written[-1].sequence == len(written) - 1  # no number lost to the failure
