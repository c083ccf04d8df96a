"""The HLS writer on real packets: atomic playlists, discontinuities, resumed
sequences, split access units. Packets come from a clip FFmpeg encoded; the
writer's output is read back by the playlist parser and PyAV.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import av
import pytest

from camstream.spec import HlsOptions
from camstream_worker.outputs.hls.sequence import TAIL_SEGMENTS, FirstNumber, Said, SequenceStart
from camstream_worker.outputs.hls.writer import HlsWriter, SegmentWritten
from camstream_worker.packets import Frame
from tests.harness.cameras import make_clip
from tests.harness.hlscheck import parse_media_playlist

pytestmark = pytest.mark.media


def feed(writer: HlsWriter, clip: Path, *, offset_seconds: float = 0.0) -> int:
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        writer.begin(streams)
        count = 0
        for packet in container.demux(streams):
            if packet.dts is None:
                continue
            shift = round(offset_seconds / packet.time_base)
            packet.dts += shift
            packet.pts += shift
            writer.write(streams.index(packet.stream), packet)
            count += 1
        writer.end()
    return count


def test_readers_never_see_a_partial_playlist(tmp_path: Path) -> None:
    clip = make_clip(seconds=20)
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=1, window_segments=3))
    playlist = tmp_path / "index.m3u8"
    problems: list[str] = []
    reads = 0
    done = threading.Event()

    def read_constantly() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                text = playlist.read_text()
            except FileNotFoundError:
                continue
            reads += 1
            parsed = parse_media_playlist(text)
            if not text.endswith("\n") or not parsed.segments:
                problems.append(text)
            for segment in parsed.segments:
                if not (tmp_path / segment.uri).exists():
                    problems.append(f"listed {segment.uri} is not on disk")

    reader = threading.Thread(target=read_constantly)
    reader.start()
    try:
        feed(writer, clip)
    finally:
        done.set()
        reader.join()
    assert reads > 100
    assert problems == []
    assert not list(tmp_path.glob(".*.tmp"))


def test_second_session_continues_the_sequence_after_a_discontinuity(tmp_path: Path) -> None:
    clip = make_clip(seconds=6)
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2, window_segments=10))
    feed(writer, clip)
    first = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    feed(writer, clip)  # a camera reconnect: timestamps start over
    second = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    sequences = [s.sequence for s in second.segments]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    boundary = len(first.segments)
    assert second.segments[boundary].discontinuity
    assert not any(s.discontinuity for s in second.segments[:boundary])


def test_a_writer_replaced_before_its_first_segment_passes_on_its_plan(tmp_path: Path) -> None:
    plan = SequenceStart(40, ahead_of=1000.0)
    writer = HlsWriter(tmp_path, HlsOptions(), start_sequence=FirstNumber(plan))
    assert writer.continuation() == plan  # still outruns the old owner, not 0
    feed(writer, make_clip(seconds=4))
    assert writer.continuation().ahead_of is None
    assert writer.continuation().number > 40


def test_a_source_whose_timestamps_start_over_continues_as_a_new_session(
    tmp_path: Path,
) -> None:
    """An RTSP source re-syncing to a new RTCP report can re-base its clock mid-session.

    Waiting for the timestamps to catch up would stall the stream for as long
    as it had run; the writer cuts there and goes on after a discontinuity.
    """
    clip = make_clip(seconds=6)
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2, window_segments=10))
    # Both passes stay open until the end: held packets refer to their container.
    with av.open(str(clip)) as first, av.open(str(clip)) as again:
        writer.begin([first.streams.video[0], first.streams.audio[0]])  # one session, to the caller
        for container in (first, again):
            streams = [container.streams.video[0], container.streams.audio[0]]
            for packet in container.demux(streams):
                if packet.dts is not None:
                    writer.write(streams.index(packet.stream), packet)
        writer.end()
    playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert writer.timeline_jumps == 1
    assert writer.dropped_packets == 0
    assert len(playlist.segments) == 6  # 3 per pass: the second pass was not dropped
    assert [s.discontinuity for s in playlist.segments] == [False] * 3 + [True] + [False] * 2


def test_a_restarted_writer_resumes_after_the_files_on_disk(tmp_path: Path) -> None:
    clip = make_clip(seconds=6)
    feed(HlsWriter(tmp_path, HlsOptions()), clip)
    before = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    restarted = HlsWriter(tmp_path, HlsOptions())  # a new process, same folder
    # The old playlist is not served as if current until the first new segment.
    assert not (tmp_path / "index.m3u8").exists()
    feed(restarted, clip)
    after = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert after.segments[-1].sequence > before.segments[-1].sequence
    resumed = next(s for s in after.segments if s.sequence == before.segments[-1].sequence + 1)
    assert resumed.discontinuity


def test_a_taking_over_writer_numbers_its_first_segment_when_it_cuts_it(
    tmp_path: Path,
) -> None:
    clip = make_clip(seconds=6)
    now = [1000.0]
    written: list[SegmentWritten] = []
    # The old owner's next number was 40 at t=1000; our first cut comes at t=1007,
    # by when it may have published up to 40 + 7 // 2 = 43 (plus one of jitter).
    shared = FirstNumber(SequenceStart(40, ahead_of=1000.0))
    writer = HlsWriter(
        tmp_path,
        HlsOptions(segment_seconds=2),
        start_sequence=shared,
        on_segment=written.append,
        wall_clock=lambda: now[0],
    )
    now[0] = 1007.0
    feed(writer, clip)
    sequences = [
        s.sequence for s in parse_media_playlist((tmp_path / "index.m3u8").read_text()).segments
    ]
    assert sequences[0] == 45
    assert sequences == list(range(45, 45 + len(sequences)))
    assert written[0].written_at == 1007.0
    assert shared.resolve(2000.0, 2) == 45  # the ladder's other writers get the same


def test_an_access_unit_split_over_two_packets_is_joined(tmp_path: Path) -> None:
    clip = make_clip(seconds=4)
    writer = HlsWriter(tmp_path, HlsOptions())
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        writer.begin([video])
        for packet in container.demux(video):
            if packet.dts is None:
                continue
            data = bytes(packet)
            if packet.is_keyframe and len(data) > 100:
                # What an RTP depacketizer may do: two packets with one timestamp.
                for part, key in ((data[:60], True), (data[60:], False)):
                    piece = av.Packet(part)
                    piece.time_base, piece.pts, piece.dts = packet.time_base, packet.pts, packet.dts
                    piece.is_keyframe = key
                    writer.write(0, piece)
            else:
                writer.write(0, packet)
        writer.end()
    playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert len(playlist.segments) >= 2
    with av.open(str(tmp_path / playlist.segments[0].uri)) as segment:
        frames = sum(1 for _ in segment.decode(video=0))
    assert frames == 50  # 2 s at 25 fps, every frame decodable
    assert writer.dropped_packets == 0


def _packets_of(segment: Path) -> dict[str, list[tuple[int | None, int | None, bool, bytes]]]:
    """Each stream's packets in order (how the two muxers interleave streams may differ)."""
    found: dict[str, list[tuple[int | None, int | None, bool, bytes]]] = {}
    with av.open(str(segment)) as container:
        for p in container.demux():
            if p.size:
                found.setdefault(p.stream.type, []).append((p.pts, p.dts, p.is_keyframe, bytes(p)))
    return found


def test_frames_from_rtmp_are_muxed_by_tsmux_as_pyav_would(tmp_path: Path) -> None:
    """Light Frames (the RTMP source's) go through tsmux.py; PyAV's muxer gets av.Packets.

    The same clip fed both ways must give the same segments to a demuxer:
    every packet's stream, pts, dts, keyframe flag and payload; and FFmpeg's
    own ffprobe must find nothing wrong in the Frames' segments, alone or
    read back to back.
    """
    clip = make_clip(seconds=10)  # FLV: AVCC video with an avcC record, raw AAC, as RTMP
    by_pyav, by_tsmux = tmp_path / "pyav", tmp_path / "tsmux"
    feed(HlsWriter(by_pyav, HlsOptions(segment_seconds=2, window_segments=10)), clip)
    writer = HlsWriter(by_tsmux, HlsOptions(segment_seconds=2, window_segments=10))
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        writer.begin(streams)
        for packet in container.demux(streams):
            if packet.dts is None or packet.pts is None:
                continue
            frame = Frame(bytes(packet), packet.dts, packet.pts, packet.is_keyframe)
            writer.write(streams.index(packet.stream), frame)
        writer.end()
    assert writer.malformed_frames == 0
    reference = parse_media_playlist((by_pyav / "index.m3u8").read_text())
    ours = parse_media_playlist((by_tsmux / "index.m3u8").read_text())
    assert [s.duration for s in ours.segments] == [s.duration for s in reference.segments]
    assert len(ours.segments) >= 4
    assert writer.ts_segments == len(ours.segments)  # the path under test was taken
    for mine, theirs in zip(ours.segments, reference.segments, strict=True):
        assert _packets_of(by_tsmux / mine.uri) == _packets_of(by_pyav / theirs.uri)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join((by_tsmux / s.uri).read_bytes() for s in ours.segments))
    for path in [*(by_tsmux / s.uri for s in ours.segments), joined]:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_packets", "-of", "csv", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stderr == "", f"{path.name}: {probe.stderr[:500]}"
        assert probe.stdout.count("packet,video") > 0


def test_a_malformed_frame_is_left_out_and_its_segment_written(tmp_path: Path) -> None:
    """An AVCC length past its frame: counted as dropped, the rest of the segment plays."""
    clip = make_clip(seconds=6)
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2, window_segments=10))
    video_frames = 0
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        writer.begin(streams)
        for packet in container.demux(streams):
            if packet.dts is None or packet.pts is None:
                continue
            data = bytes(packet)
            index = streams.index(packet.stream)
            if index == 0:
                video_frames += 1
                if video_frames == 10:  # a P-frame inside the first segment
                    data = (len(data) + 100).to_bytes(4, "big") + data[4:]
            writer.write(index, Frame(data, packet.dts, packet.pts, packet.is_keyframe))
        writer.end()
    assert writer.malformed_frames == 1
    assert writer.dropped_packets == 1
    playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert writer.ts_segments == len(playlist.segments) >= 3
    first = _packets_of(tmp_path / playlist.segments[0].uri)
    assert len(first["video"]) == 49  # 2 s at 25 fps, less the malformed one
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_packets",
            "-of",
            "csv",
            str(tmp_path / playlist.segments[0].uri),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stderr == ""


def _frames_of(clip: Path) -> tuple[list[av.stream.Stream], list[tuple[int, Frame]], av.Container]:
    """The clip's packets as the RTMP source hands them over (Frames), and its templates."""
    container = av.open(str(clip))
    streams = [container.streams.video[0], container.streams.audio[0]]
    frames = [
        (streams.index(p.stream), Frame(bytes(p), p.dts, p.pts, p.is_keyframe))
        for p in container.demux(streams)
        if p.dts is not None and p.pts is not None
    ]
    return streams, frames, container


def test_a_segment_is_written_as_it_goes_and_is_the_same_bytes(tmp_path: Path) -> None:
    """tsmux segments are appended to a partial file while their frames come, not held.

    The segments must be byte for byte what muxing each segment's frames at
    its cut gives (TsMuxer.segment, what the writer did before), the partial
    file must grow before the cut (the GOP is not in memory) and never be
    listed, and the recorder's copy (`data`) must be the file's bytes.
    """
    from camstream_worker.media import coding_format
    from camstream_worker.outputs.hls.tsmux import TsMuxer
    from camstream_worker.outputs.hls.writer import PARTIAL_SEGMENT, SPILL_BYTES

    streams, frames, container = _frames_of(make_clip(seconds=10, bitrate_kbps=1000))
    written: list[SegmentWritten] = []
    cuts: list[int] = []  # how many frames were fed when each segment was cut
    fed = 0

    def on_segment(segment: SegmentWritten) -> None:
        written.append(segment)
        cuts.append(fed)

    writer = HlsWriter(
        tmp_path, HlsOptions(segment_seconds=2, window_segments=10), on_segment=on_segment
    )
    partial = tmp_path / PARTIAL_SEGMENT
    grown_before_first_cut = 0
    with container:
        writer.begin(streams)
        for index, frame in frames:
            writer.write(index, frame)
            fed += 1
            if not written and partial.exists():
                grown_before_first_cut = partial.stat().st_size
        writer.end()
        reference = TsMuxer.for_codecs(
            [(coding_format(s), bytes(s.codec_context.extradata or b"")) for s in streams]
        )
    assert reference is not None
    assert grown_before_first_cut >= SPILL_BYTES  # the first GOP went to disk as it came
    assert not partial.exists()
    playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert len(playlist.segments) == len(written) >= 4
    assert writer.ts_segments == len(written)
    assert all(PARTIAL_SEGMENT not in s.uri for s in playlist.segments)
    # A segment ends with the frame before the keyframe that cut it (the last
    # one, at end(), with the last frame).
    bounds = [0, *(cut for cut in cuts[:-1]), len(frames)]
    for number, segment in enumerate(playlist.segments):
        expected = reference.segment(frames[bounds[number] : bounds[number + 1]])
        on_disk = (tmp_path / segment.uri).read_bytes()
        assert on_disk == expected, f"segment {number} differs"
        assert written[number].data == on_disk and written[number].size == len(on_disk)


def test_without_a_recorder_a_written_segment_is_not_read_back(tmp_path: Path) -> None:
    streams, frames, container = _frames_of(make_clip(seconds=6))
    written: list[SegmentWritten] = []
    writer = HlsWriter(
        tmp_path, HlsOptions(segment_seconds=2), on_segment=written.append, keep_data=False
    )
    with container:
        writer.begin(streams)
        for index, frame in frames:
            writer.write(index, frame)
        writer.end()
    assert len(written) >= 3
    for segment in written:
        assert segment.data == b""
        assert segment.size == (tmp_path / f"seg{segment.sequence}.ts").stat().st_size > 0


def test_a_dropped_session_leaves_no_partial_segment(tmp_path: Path) -> None:
    """The stream moved away mid-segment (end(keep_last=False)): nothing is left behind."""
    from camstream_worker.outputs.hls.writer import PARTIAL_SEGMENT

    streams, frames, container = _frames_of(make_clip(seconds=4))
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2))
    with container:
        writer.begin(streams)
        for index, frame in frames:
            writer.write(index, frame)
            if (tmp_path / "seg0.ts").exists() and (tmp_path / PARTIAL_SEGMENT).exists():
                break  # the second segment is part written
        assert (tmp_path / PARTIAL_SEGMENT).exists()
        writer.end(keep_last=False)
    assert not (tmp_path / PARTIAL_SEGMENT).exists()
    assert sorted(p.name for p in tmp_path.glob("seg*")) == ["seg0.ts"]


def test_a_segment_that_cannot_be_appended_is_dropped_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    """Appending fails mid-segment (the disk went away): that segment is lost, the
    next ones are written, numbered on, after a discontinuity."""
    from camstream_worker.outputs.hls.writer import PARTIAL_SEGMENT

    streams, frames, container = _frames_of(make_clip(seconds=12))
    written: list[SegmentWritten] = []
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2), on_segment=written.append)
    blocker = tmp_path / PARTIAL_SEGMENT
    with container:
        writer.begin(streams)
        for index, frame in frames:
            seconds = frame.dts / 1000
            if 4.5 < seconds < 5.5 and not blocker.is_dir():
                blocker.unlink(missing_ok=True)
                blocker.mkdir()  # every append fails: EISDIR
            elif seconds >= 5.5 and blocker.is_dir():
                blocker.rmdir()
            writer.write(index, frame)
        writer.end()
    assert writer.failed_writes >= 1
    playlist = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert [s.sequence for s in playlist.segments] == list(range(len(playlist.segments)))
    assert playlist.discontinuity_positions
    assert written[-1].sequence == len(written) - 1  # no number lost to the failure
    for segment in playlist.segments:  # what was written plays
        assert _packets_of(tmp_path / segment.uri)["video"][0][2]  # starts on a keyframe


def test_every_writer_of_a_stream_gives_its_sessions_new_discontinuity_numbers(
    tmp_path: Path,
) -> None:
    """A handoff and a hand-back: no two sessions of the stream share a number.

    hls.js keys a session's timestamp offset by its discontinuity number; a
    new owner that counted from 0 reused the fallback's number at the
    hand-back, and the player placed the new session where the old one's
    timestamps said: the picture froze, then jumped back ~24 s (#15).
    """
    clip = make_clip(seconds=6)
    options = HlsOptions(segment_seconds=2, window_segments=10)
    numbers: list[list[tuple[int, int]]] = []  # per writer: (sequence, discontinuity number)
    start = SequenceStart(100)
    for owner in ("home", "fallback", "home-again"):
        writer = HlsWriter(
            tmp_path / owner,
            options,
            start_sequence=FirstNumber(start),
            discontinuity_on_first=owner != "home",
        )
        feed(writer, clip)
        feed(writer, clip)  # a camera reconnect on this owner: one more session
        text = (tmp_path / owner / "index.m3u8").read_text()
        segments = parse_media_playlist(text).segments
        numbers.append([(s.sequence, s.discontinuity_sequence) for s in segments])
        # The next owner starts above this one, skipping a number as a
        # handoff's outrunning start does (sequence.py).
        start = SequenceStart(segments[-1].sequence + 2)
    for before, after in itertools.pairwise(numbers):
        assert max(d for _, d in before) < min(d for _, d in after), numbers
    for listed in numbers:
        assert len({d for _, d in listed}) == 2  # two sessions, two numbers
        assert all(d <= s for s, d in listed)  # what the next writer relies on
        assert listed[0][0] == listed[0][1]  # based on the first segment's number


def _fenced_handoff(
    folder: Path,
    *,
    new_joins_at: float,
    fence_at: float,
    segment_type: Literal["mpegts", "fmp4"] = "mpegts",
    reports: dict[str, list[tuple[bool, SegmentWritten]]] | None = None,
) -> tuple[Said, Path, Path, bool]:
    """Two owners write one clip, the new one from `new_joins_at` (media
    seconds; the wall clock follows the media), numbered past the old; at
    `fence_at` the new one fences the old one and follows on. Returns the
    fence's answer, both folders, and whether the new owner had published a
    playlist before the fence. `reports` receives the new owner's segment
    reports, "status" (on_segment) and "published" (on_published), each with
    whether the fence had been answered then."""
    answered = False
    heard = reports if reports is not None else {}

    def report(kind: str) -> Callable[[SegmentWritten], None]:
        return lambda written: heard.setdefault(kind, []).append((answered, written))

    clip = make_clip(seconds=16, gop_seconds=1.0)
    options = HlsOptions(segment_seconds=2, window_segments=10, segment_type=segment_type)
    now = 1000.0
    old = HlsWriter(folder / "old", options, start_sequence=50, wall_clock=lambda: now)
    new = HlsWriter(
        folder / "new",
        options,
        start_sequence=FirstNumber(SequenceStart(53, ahead_of=now + new_joins_at)),
        discontinuity_on_first=True,
        wall_clock=lambda: now,
        await_fence=True,
        on_segment=report("status"),
        on_published=report("published"),
    )
    fenced: Said | None = None
    published_early = False
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        old.begin(streams)
        new.begin(streams)
        for packet in container.demux(streams):
            if packet.dts is None:
                continue
            seconds = float(packet.dts * packet.time_base)
            now = 1000.0 + seconds
            index = streams.index(packet.stream)
            old.write(index, packet)
            if seconds >= new_joins_at:
                new.write(index, packet)
            if fenced is None and seconds >= fence_at:
                published_early = (folder / "new" / "index.m3u8").exists()
                fenced = old.fence()
                assert fenced is not None
                answered = True
                new.follow_on(*fenced)
        old.end(keep_last=False)
        new.end()
    assert fenced is not None
    return fenced, folder / "old", folder / "new", published_early


def test_a_fenced_old_owner_is_followed_on_without_a_hole_in_the_numbers(
    tmp_path: Path,
) -> None:
    """Make before break with the fence (sequence.py): the new owner, cutting
    at other keyframes than the old one, numbers past it and publishes no
    playlist; once fenced, the old one publishes nothing more and the new
    one's playlist continues right after the old one's last number, from a
    cut no later than the old one's last (no hole in the picture either).

    In front of its own it lists the old one's newest TAIL_SEGMENTS, as the
    old one listed them (numbers, discontinuity numbers, bytes): a player
    coming over finds numbers it knows and loads the ones it missed."""
    fenced, old, new, published_early = _fenced_handoff(tmp_path, new_joins_at=3.0, fence_at=11.0)
    last, end = fenced.last, fenced.end
    assert not published_early  # its provisional numbers were never shown
    before = parse_media_playlist((old / "index.m3u8").read_text())
    assert before.segments[-1].sequence == last  # nothing published after the fence
    after = parse_media_playlist((new / "index.m3u8").read_text())
    numbers = [s.sequence for s in after.segments]
    assert numbers == list(range(last - TAIL_SEGMENTS + 1, last - TAIL_SEGMENTS + 1 + len(numbers)))
    handed = after.segments[:TAIL_SEGMENTS]
    for segment, there in zip(handed, before.segments[-TAIL_SEGMENTS:], strict=True):
        assert (segment.sequence, segment.discontinuity_sequence) == (
            there.sequence,
            there.discontinuity_sequence,
        )
        assert segment.duration == pytest.approx(there.duration, abs=0.001)
        assert (new / segment.uri).read_bytes() == (old / there.uri).read_bytes()
    own = after.segments[TAIL_SEGMENTS:]
    assert own and own[0].sequence == last + 1 and own[0].discontinuity
    # A number the old owner never used: one above its last, at most L + 1.
    assert own[0].discontinuity_sequence == before.segments[-1].discontinuity_sequence + 1
    assert own[0].discontinuity_sequence <= last + 1
    assert sorted(p.name for p in new.glob("seg*.ts")) == sorted(s.uri for s in after.segments)
    # The picture: the new owner's first segment starts no later than the old
    # owner's last one ended (media time, one clip), and the clip goes on.
    with av.open(str(new / own[0].uri)) as first:
        start = min(float(p.pts * p.time_base) for p in first.demux() if p.pts is not None)
    with av.open(str(old / before.segments[-1].uri)) as final:
        video = final.streams.video[0]
        old_end = max(float(p.pts * p.time_base) for p in final.demux(video) if p.pts is not None)
    assert start <= old_end + 0.1, (start, old_end)
    assert end - 1000.0 == pytest.approx(old_end + 0.04, abs=0.5)


def test_a_recorder_hears_only_final_numbers_and_the_status_hears_at_once(
    tmp_path: Path,
) -> None:
    """The status (Live, which the handoff's confirmation waits for) hears of
    every segment as it is cut; the recorder and its DVR (on_published) only
    of segments whose number is final: the kept ones, renumbered, at the fence,
    then each new one. What the old owner covered is never reported twice."""
    reports: dict[str, list[tuple[bool, SegmentWritten]]] = {}
    fenced, _old, new, _ = _fenced_handoff(
        tmp_path, new_joins_at=3.0, fence_at=11.0, reports=reports
    )
    last = fenced.last
    status, published = reports["status"], reports["published"]
    assert any(not answered for answered, _ in status)  # heard before the fence
    assert all(answered for answered, _ in published)  # nothing provisional
    numbers = [w.sequence for _, w in published]
    assert numbers == list(range(last + 1, last + 1 + len(numbers)))
    assert published[0][1].discontinuity
    listed = parse_media_playlist((new / "index.m3u8").read_text())
    own = [s.sequence for s in listed.segments if s.sequence > last]  # not the old one's tail
    assert numbers[-len(own) :] == own
    assert all((new / f"seg{n}.ts").exists() for n in own)


def test_a_fenced_owner_cutting_at_the_same_keyframes_is_followed_by_the_next_cut(
    tmp_path: Path,
) -> None:
    """A forked pushed stream: both owners cut at the same keyframes, so the
    old one covered everything the new one listed; the new one's playlist
    starts at its next cut, numbered right after the old one's last (behind
    the old one's tail)."""
    fenced, old, new, _ = _fenced_handoff(tmp_path, new_joins_at=0.0, fence_at=9.0)
    last = fenced.last
    before = parse_media_playlist((old / "index.m3u8").read_text())
    after = parse_media_playlist((new / "index.m3u8").read_text())
    assert before.segments[-1].sequence == last
    own = after.segments[TAIL_SEGMENTS:]
    assert [s.sequence for s in after.segments][: TAIL_SEGMENTS + 2] == list(
        range(last - TAIL_SEGMENTS + 1, last + 3)
    )
    assert own[0].discontinuity
    assert own[0].discontinuity_sequence == before.segments[-1].discontinuity_sequence + 1
    assert sorted(p.name for p in new.glob("seg*.ts")) == sorted(s.uri for s in after.segments)


def test_without_a_fence_answer_the_provisional_numbers_are_published(tmp_path: Path) -> None:
    """The old owner crashed or cannot be reached: the new owner's numbers stay
    above it (outrun), as before the fence, and the playlist goes out."""
    writer = HlsWriter(
        tmp_path,
        HlsOptions(segment_seconds=2, window_segments=10),
        start_sequence=FirstNumber(SequenceStart(40, ahead_of=0.0)),
        discontinuity_on_first=True,
        wall_clock=lambda: 0.0,
        await_fence=True,
    )
    feed(writer, make_clip(seconds=6))
    assert list(tmp_path.glob("seg*.ts"))
    assert not (tmp_path / "index.m3u8").exists()
    writer.publish_provisional()
    listed = parse_media_playlist((tmp_path / "index.m3u8").read_text())
    assert listed.segments[0].sequence == 42  # outrun(40): above the old owner's 40 + jitter
    assert listed.segments[0].discontinuity


def test_a_fenced_fmp4_owner_keeps_the_init_its_renumbered_segments_need(tmp_path: Path) -> None:
    """fMP4 hands over no tail (its init segments would have to go along)."""
    fenced, _old, new, _ = _fenced_handoff(
        tmp_path, new_joins_at=3.0, fence_at=11.0, segment_type="fmp4"
    )
    last = fenced.last
    assert fenced.tail == ()
    after = parse_media_playlist((new / "index.m3u8").read_text())
    assert after.segments[0].sequence == last + 1
    assert after.map_uri is not None and (new / after.map_uri).exists()
    assert sorted(p.name for p in new.glob("seg*.m4s")) == sorted(s.uri for s in after.segments)
    assert [p.name for p in new.glob("init*.mp4")] == [after.map_uri]  # none left behind


def test_the_fences_tail_keeps_to_its_byte_budget(tmp_path: Path) -> None:
    """The newest segments within the budget, the newest first; none read past it."""
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2, window_segments=10))
    feed(writer, make_clip(seconds=10))
    listed = parse_media_playlist((tmp_path / "index.m3u8").read_text()).segments
    sizes = [(tmp_path / s.uri).stat().st_size for s in listed]
    assert len(listed) >= TAIL_SEGMENTS + 1
    full = writer.fence()
    assert full is not None
    assert [t.sequence for t in full.tail] == [s.sequence for s in listed[-TAIL_SEGMENTS:]]
    assert [t.data for t in full.tail] == [(tmp_path / s.uri).read_bytes() for s in listed[-3:]]
    one = writer.fence(sizes[-1] + sizes[-2] - 1)
    assert one is not None and [t.sequence for t in one.tail] == [listed[-1].sequence]
    nothing = writer.fence(0)
    assert nothing is not None and nothing.tail == () and nothing.last == listed[-1].sequence


@pytest.mark.parametrize(("session_seconds", "segments"), [(4.2, 2), (4.7, 3)])
def test_a_session_s_last_stub_is_dropped_not_published(
    tmp_path: Path, session_seconds: float, segments: int
) -> None:
    """A session that ends 0.2 s after a cut leaves no 0.2 s segment: a stub
    can hold one track only (an RTMP camera's audio trails its video), and
    hls.js waited on the segment after it (writer.py, MIN_LAST_SEGMENT_SECONDS).
    A longer last stretch (0.7 s) is still published."""
    clip = make_clip(seconds=6, gop_seconds=2.0)
    writer = HlsWriter(tmp_path, HlsOptions(segment_seconds=2, window_segments=10))
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        writer.begin(streams)
        for packet in container.demux(streams):
            if packet.dts is not None and packet.pts * packet.time_base < session_seconds:
                writer.write(streams.index(packet.stream), packet)
        writer.end()
    listed = parse_media_playlist((tmp_path / "index.m3u8").read_text()).segments
    assert len(listed) == segments, listed
    assert all(s.duration >= 0.5 for s in listed), listed
    assert writer.stub_segments_dropped == 3 - segments
    assert sorted(p.name for p in tmp_path.glob("*.ts")) == [s.uri for s in listed]
