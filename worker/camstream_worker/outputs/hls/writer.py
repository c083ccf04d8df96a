"""Cut a stream's packets into HLS segments and keep its live playlist.

Who calls this: the stream's session (an `Output`, see outputs/base.py), once
per stream, from whichever thread reads the source, and the transcoder, once
per rendition. The writer never decodes: packets are remuxed as they come.

How it works: packets of the current segment are held in memory (about one
GOP); when a video keyframe arrives and the segment is long enough, the held
packets are muxed into one MPEG-TS file (so every segment starts with PAT/PMT
and a keyframe and stands alone), the file is written under a temporary name
and renamed, then the playlist is rewritten the same way. A reader therefore
never sees a half-written segment or playlist.

Written as it goes: a segment that tsmux.py writes (below) is not held as a
GOP of frames. Frames are muxed as soon as no later packet can be joined to
them (the last packet of each track stays held, see `_join`), and the bytes
are appended to the segment's temporary file every SPILL_BYTES; the cut
renames it. The bytes are the same as muxing the held GOP at the cut; what
a stream holds between cuts falls from a GOP (~300 KB at 1 Mbit/s and 2 s)
to at most SPILL_BYTES, which at hundreds of streams per process is most of
a worker's memory (bench/README.md, part 3). The cut's guarantees hold: a
failed write drops the segment and marks the gap, a dropped session's
partial file is removed, nothing unrenamed is ever listed.

Two muxers: a session of light `Frame`s (packets.py; the RTMP source) in
H.264 + AAC is written by tsmux.py, in Python, with no `av.Packet` per frame
and no muxer per segment; everything else (PyAV sources' `av.Packet`s, HEVC,
HE-AAC, fMP4) goes through a fresh PyAV muxer per segment, the Frames
converted to `av.Packet`s there and only there. A malformed Frame (an AVCC
length past its end) is left out of its segment by tsmux.py and counted as
dropped, where PyAV's muxer would have failed on it.

The fence at a handoff (sequence.py). A new owner's writer (`await_fence`)
numbers its segments provisionally (above anything the old owner can have
published) and publishes no playlist, so no viewer sees those numbers. The
old owner's writer, asked by the new owner, stops publishing (`fence`) and
says its last number, the wall time that segment was cut and its newest
segments with their bytes (MPEG-TS; sequence.TAIL_SEGMENTS); the new
owner's writer then drops the segments that cut covered and renumbers the
rest to follow it (`follow_on`): files renamed, the old owner's newest
written here and listed first with the discontinuity numbers they had
there, the first kept segment a discontinuity numbered above the old
owner's, the playlist written (at the next cut if nothing is listed).
Without an answer the new owner publishes its provisional numbers
(`publish_provisional`). These run on another thread
than the packets' (the agent's), so cutting and publishing hold a lock.
What reports a segment to the world outside the stream's status (the
recorder and its DVR window, `on_published`) hears of it only once its
number is final: a provisional one is held until then (at most a window's
worth), under the same lock, so a cut after the fence can never overtake it.
The status (`on_segment`) hears at once: the stream's Live phase, which the
handoff's confirmation waits for, must not wait for the fence that comes
after it.

A new source session (`begin` after `end`, e.g. a camera reconnect or a
handoff) continues the media sequence and marks its first segment with
EXT-X-DISCONTINUITY, because timestamps and codec parameters may change.

Discontinuity numbers across writers. A player keys a session's timestamp
mapping by the segment's discontinuity number (hls.js keeps one initPTS per
number), so two sessions must never share one, whoever wrote them. A new
owner's writer cannot count on from the old one's (a crashed owner cannot be
asked), so each writer bases its count on its first segment's media sequence
number: that segment's discontinuity number is its sequence number, and every
later one adds one at a new segment. A segment's discontinuity number is
therefore never above its sequence number, and since a stream's next writer
starts above every number its previous writers published (sequence.py), it
starts above their discontinuity numbers too. (Counting from 0 in every
writer, a hand-back reused the number of the fallback's session: hls.js then
placed the new session with the old one's timestamp offset, and the picture
froze and jumped back ~20 s, #15.)

Segment caps. Waiting for a keyframe holds the segment in memory; a camera
with a very long keyframe interval (some "smart codec" modes send one every
20 s or more), or a publisher that never sends another, would grow one
segment without bound (240 MB in memory, then a 258 MB file, were seen). A
segment is therefore cut when it reaches `max_segment_seconds` of media or
`max_segment_bytes` (as MediaMTX's hlsSegmentMaxSize), keyframe or not.
Cut, rather than the publisher dropped: a long-GOP camera is no attacker,
and its viewers keep playing (a player that has the previous segment decodes
on); a viewer who joins at a segment cut without a keyframe waits for the
next keyframe. Such a segment is reported (`SegmentWritten.forced`, which the
stream shows as its reason), and the playlist stops claiming
EXT-X-INDEPENDENT-SEGMENTS while one is listed.
Segments that leave the window stay on disk for `retain_extra` more segments,
so a player that fetched an older playlist can still load them, then go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from camstream import wire
from camstream.spec import HlsOptions
from camstream_worker.media import coding_format
from camstream_worker.outputs.hls import fmp4
from camstream_worker.outputs.hls import sequence as numbering
from camstream_worker.outputs.hls.playlist import (
    Segment,
    render_media_playlist,
    slide_window,
    target_duration,
)
from camstream_worker.outputs.hls.sequence import FirstNumber, SequenceStart
from camstream_worker.outputs.hls.tsmux import TsMuxer
from camstream_worker.packets import Frame, Packet, to_av

log = logging.getLogger(__name__)

# A segment is never cut shorter than the target, less float noise: the
# numbering rules of sequence.py rely on a writer publishing at most one
# segment per target duration.
CUT_SLACK = 0.001
# Timestamps that jump back by more than this (or ahead by more than
# JUMP_AHEAD_SECONDS) mid-session are a new timeline, not reordering: the
# source re-based its clock (an RTSP server re-syncing RTP to a new RTCP
# sender report does this when another client joins). Waiting for the
# timestamps to catch up would stall the stream for as long as it had run.
JUMP_BACK_SECONDS = 1.0
JUMP_AHEAD_SECONDS = 10.0
# Segment caps: a segment is cut at this much media even without a keyframe
# (at least MAX_SEGMENT_TARGETS segment durations, for long-segment streams)...
MAX_SEGMENT_SECONDS = 15.0
MAX_SEGMENT_TARGETS = 3
# ...or when its packets reach this size (a 4K camera at 16 Mbit/s fills it in
# 16 s, past the duration cap; MediaMTX's hlsSegmentMaxSize defaults to 50M).
MAX_SEGMENT_BYTES = 32 * 1024 * 1024
# The I/O buffer of the container that only holds the session's stream templates.
TEMPLATE_BUFFER_SIZE = 512
# What a held packet costs besides its payload (the AVPacket and Python objects).
PACKET_OVERHEAD = 200
# Packets of one timestamp are joined (one access unit split by RTP: SPS,
# PPS, slices) up to this many; each join copies the whole, so a flood of
# them must not cost quadratic time.
MAX_JOINED_PACKETS = 32
# A segment written as it goes (tsmux.py) is appended to its temporary file
# once at least this many bytes of frames are muxed (~1 s at 1 Mbit/s: an
# append a second, three system calls; a smaller piece holds less but opens
# the file more often, which costs more CPU than the memory saved is worth),
# and muxed at least this many frames at a time (~0.5 s at 25 fps with
# audio): fewer, larger calls.
SPILL_BYTES = 128 * 1024
DRAIN_FRAMES = 32
# The temporary file of the segment being written as it goes (renamed at its cut).
PARTIAL_SEGMENT = ".partial.ts.tmp"
# A session's last stretch shorter than this is dropped at its end, not
# published. Sources interleave their tracks with a lag (an RTMP camera's
# audio trails its video by ~0.2 s), so such a stub can hold video only: a
# player's buffer then ends the lag plus the stub short of the next segment,
# past hls.js's 0.25 s lookup tolerance, and it waits there. Seen at a
# handoff: the edge dropped the old owner 0.1 s after a cut, its stub was the
# last segment the fence reported, and hls.js waited on the new owner's
# first (0.8 s frozen, CI of 6ece625). The new owner covers that media; a
# camera that leaves loses at most this much of its end.
MIN_LAST_SEGMENT_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class SegmentWritten:
    """Reported after each segment, for status and metrics."""

    sequence: int
    duration: float
    size: int
    discontinuity: bool
    discontinuity_sequence: int
    written_at: float  # wall clock when the segment was cut
    forced: bool = False  # cut at a cap, not at a keyframe: the next one starts without one
    # For the recorder (outputs/recording/): the segment's own bytes, the wall
    # clock of its first frame (its program date-time) and, for fMP4, its init.
    data: bytes = b""
    started_at: float = 0.0
    init: bytes | None = None


class HlsWriter:
    """Segments and playlist of one stream (or one rendition) in one folder."""

    def __init__(
        self,
        directory: Path,
        options: HlsOptions,
        *,
        start_sequence: int | FirstNumber = 0,
        discontinuity_on_first: bool = False,
        retain_extra: int = 3,
        on_segment: Callable[[SegmentWritten], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        max_segment_seconds: float | None = None,
        max_segment_bytes: int = MAX_SEGMENT_BYTES,
        keep_data: bool = True,
        await_fence: bool = False,
        on_published: Callable[[SegmentWritten], None] | None = None,
    ) -> None:
        """`max_segment_seconds`: None for the default cap (the larger of
        MAX_SEGMENT_SECONDS and MAX_SEGMENT_TARGETS segment durations);
        `keep_data`: `SegmentWritten.data` carries the segment's bytes (for a
        recorder); False leaves it empty, so a segment written as it goes is
        never read back; `await_fence`: a handoff's new owner, numbering
        provisionally and publishing no playlist until `follow_on` or
        `publish_provisional`; `on_published`: each segment again, once its
        number is final (see "The fence" above)."""
        self._dir = directory
        self._options = options
        if isinstance(start_sequence, FirstNumber):
            # Decided when the first segment is cut: see sequence.py.
            self._first_number: FirstNumber | None = start_sequence
            self._next_sequence = 0
        else:
            self._first_number = None
            self._next_sequence = start_sequence
        self._pending_discontinuity = discontinuity_on_first
        self._retain_extra = retain_extra
        self._on_segment = on_segment
        self._on_published = on_published
        # Reports of provisional segments, for on_published once renumbered (a window's worth).
        self._unpublished: list[SegmentWritten] = []
        self._clock = wall_clock
        self._listed: tuple[Segment, ...] = ()
        self._retired: list[Segment] = []
        self._ends: dict[int, float] = {}  # listed sequence -> wall time of its cut
        self._fenced = False  # a new owner continues the stream: publish nothing more
        self._awaiting_fence = await_fence  # numbers provisional, playlist unpublished
        self._lock = threading.RLock()  # cuts against fence/follow_on (another thread)
        self._discontinuity_sequence = 0
        self._counted = False  # whether the count is based yet (at the first segment)
        self._target = options.segment_seconds
        self._templates: list[av.stream.Stream] = []
        self._source_templates: list[av.stream.Stream] = []
        self._own_templates: av.container.OutputContainer | None = None
        self._init_uri: str | None = None
        self._video_index: int | None = None
        self._held: list[tuple[int, Packet]] = []
        # Positions are counted over the session's segments: _held[0] is the
        # packet at position _held_base (earlier ones were muxed as they went).
        self._held_base = 0
        self._segment_packets = 0  # taken into the current segment, held or muxed
        self._ts: TsMuxer | None = None  # this session's own MPEG-TS writer, if it carries it
        self._held_bytes = 0  # of the current segment, held or muxed: for the byte cap
        self._joined: dict[int, int] = {}  # position: packets joined into it
        # The current segment written as it goes (tsmux, Frames): its muxed bytes
        # not yet appended, what its temporary file holds, why appending failed.
        self._streaming = False
        self._tables_done = False
        self._pending: list[bytes | memoryview] = []  # pieces of TS packets (tsmux.py)
        self._pending_bytes = 0
        self._spilled = 0  # bytes in the partial file; 0 once it is renamed (or none yet)
        self._spill_error: OSError | None = None
        # Paths of the segment-write path as strings, made once: a Path joined
        # per append and per cut was ~2 % of an engine at N = 400 (bench/README.md).
        self._dir_str = os.fspath(directory)
        self._partial = os.path.join(self._dir_str, PARTIAL_SEGMENT)
        self._keep_data = keep_data
        self._max_seconds = (
            max_segment_seconds
            if max_segment_seconds is not None
            else max(MAX_SEGMENT_SECONDS, MAX_SEGMENT_TARGETS * options.segment_seconds)
        )
        self._max_bytes = max_segment_bytes
        self._starts_on_keyframe = True  # of the segment held now
        self._segment_start: float | None = None  # media seconds of the held segment's first packet
        self._segment_wall: float | None = None
        self._last_time: float | None = None
        self._sessions = 0
        # Per template index: the last dts taken and where its packet is held.
        self._last_dts: dict[int, tuple[int, int | None]] = {}
        self.dropped_packets = 0
        self.timeline_jumps = 0
        self.forced_cuts = 0
        self.stub_segments_dropped = 0  # last stretches under MIN_LAST_SEGMENT_SECONDS
        self.inherited_segments = 0  # the old owners' segments listed here after a fence
        self.failed_writes = 0
        self.ts_segments = 0  # segments tsmux.py wrote
        self.malformed_frames = 0  # Frames tsmux.py left out (also in dropped_packets)
        directory.mkdir(parents=True, exist_ok=True)
        resumed = _next_sequence_on_disk(directory / wire.PLAYLIST)
        if resumed is not None and resumed > self._next_sequence:
            # A restarted worker must not reuse segment names players may have cached.
            self._next_sequence = resumed
            self._pending_discontinuity = True
        # An earlier life's playlist is not this stream's present: served until
        # our first segment, it would show a viewer that came from the stream's
        # other owner an older sequence (a worker restarted after a crash gets
        # its pushed streams back before their cameras reconnect).
        (directory / wire.PLAYLIST).unlink(missing_ok=True)

    @property
    def max_segment_seconds(self) -> float:
        """The duration cap: a segment is cut here even without a keyframe."""
        return self._max_seconds

    def continuation(self) -> SequenceStart:
        """Where a writer replacing this one (same stream, same worker) starts."""
        if self._first_number is not None:  # nothing cut yet: the original plan holds
            start = self._first_number.start
            return dataclasses.replace(start, number=max(start.number, self._next_sequence))
        return SequenceStart(self._next_sequence)

    def fence(self, tail_bytes: int = numbering.TAIL_BYTES) -> numbering.Said | None:
        """Stop publishing: the stream's new owner continues from here.

        Returns the last published segment's number, the wall time it was cut
        (its end) and the newest listed segments with their bytes (at most
        numbering.TAIL_SEGMENTS and `tail_bytes`; MPEG-TS only), or None if
        none was published. Segments cut from now on are dropped; the stream
        is leaving this worker anyway.
        """
        with self._lock:
            self._fenced = True
            if not self._listed:
                return None
            last = self._listed[-1].sequence
            return numbering.Said(last, self._ends[last], self._tail(tail_bytes))

    def _tail(self, budget: int) -> tuple[numbering.TailSegment, ...]:
        """The newest listed segments as the fence hands them over, oldest first."""
        numbers = itertools.accumulate(
            (int(s.discontinuity) for s in self._listed), initial=self._discontinuity_sequence
        )
        listed = list(zip(self._listed, list(numbers)[1:], strict=True))
        tail: list[numbering.TailSegment] = []
        for segment, number in reversed(listed[-numbering.TAIL_SEGMENTS :]):
            if segment.init_uri is not None:
                return ()  # fMP4: its init segments would have to go along
            path = self._dir / segment.uri
            try:
                if path.stat().st_size > budget:
                    break  # not read at all: the budget bounds the reading too
                data = path.read_bytes()
            except OSError:
                break
            budget -= len(data)
            if budget < 0:
                break
            tail.append(
                numbering.TailSegment(
                    segment.sequence,
                    segment.duration,
                    number,
                    segment.program_date_time,
                    segment.independent,
                    data,
                )
            )
        return tuple(reversed(tail))

    def follow_on(
        self,
        source_last: int,
        source_end: float,
        tail: Sequence[numbering.TailSegment] = (),
    ) -> numbering.FollowOn:
        """Continue the old owner's numbers: its last was `source_last`, cut at
        `source_end` (this machine's wall clock, as the writer's own cuts).

        Drops the listed segments the old owner covered, renumbers the rest
        from source_last + 1 (renaming their files) and rewrites the playlist,
        listing the old owner's newest segments (`tail`, written here) in front
        of them with the discontinuity numbers they had there, so a player
        coming over from the old owner finds numbers it knows (see
        sequence.TAIL_SEGMENTS). Segments already out of the window go: their
        provisional names may be numbers the renumbered ones now carry.
        """
        with self._lock:
            plan = numbering.follow_on(
                [(s.sequence, self._ends[s.sequence]) for s in self._listed],
                source_last,
                source_end,
            )
            self._awaiting_fence = False
            gone = [s for s in self._listed if s.sequence in plan.dropped]
            kept_inits = {s.init_uri for s in self._listed if s.sequence in plan.numbers}
            for segment in (*self._retired, *gone):
                (self._dir / segment.uri).unlink(missing_ok=True)
                init = segment.init_uri
                if init is not None and init not in kept_inits and init != self._init_uri:
                    (self._dir / init).unlink(missing_ok=True)
            self._retired = []
            self._first_number = None
            self._next_sequence = plan.next_sequence
            usable = numbering.usable_tail(tail, source_last)
            inherited = self._inherit(usable)
            if not plan.numbers:
                # Nothing left: the next segment cut comes right after the old
                # owner's last, a discontinuity numbered L + 1 (see _written),
                # or one above the old owner's last discontinuity number when
                # its tail is listed (never used there; at most L + 1 too).
                self._listed = inherited
                self._ends = {source_last: source_end} if inherited else {}
                self._pending_discontinuity = True
                self._counted = bool(inherited)
                self._unpublished = []  # all covered: the old owner reported them
                if inherited:
                    self._discontinuity_sequence = usable[0].discontinuity_number
                    self._write_listed()
                return plan
            kept = [s for s in self._listed if s.sequence in plan.numbers]
            moved: list[Segment] = []
            # Through temporary names: a new name may be another kept segment's old one.
            for segment in kept:
                new = plan.numbers[segment.sequence]
                moved.append(
                    dataclasses.replace(
                        segment,
                        sequence=new,
                        uri=f"seg{new}{Path(segment.uri).suffix}",
                        discontinuity=segment.discontinuity or not moved,
                    )
                )
                self._rename(segment.uri, f".{moved[-1].uri}.follow")
            for segment in moved:
                self._rename(f".{segment.uri}.follow", segment.uri)
            self._ends = {
                plan.numbers[old]: end for old, end in self._ends.items() if old in plan.numbers
            }
            self._listed = (*inherited, *moved)
            self._discontinuity_sequence = plan.discontinuity_sequence
            if inherited:
                self._ends[source_last] = source_end
                self._discontinuity_sequence = usable[0].discontinuity_number
            self._write_listed()
            self._release_unpublished(plan.numbers)
            return plan

    def _inherit(self, tail: Sequence[numbering.TailSegment]) -> tuple[Segment, ...]:
        """Write the old owner's tail here; its entries as this playlist lists them
        (the first one's discontinuity number is the playlist's base)."""
        if not tail or self._options.segment_type == "fmp4":
            return ()
        listed: list[Segment] = []
        for before, said in zip((None, *tail), tail, strict=False):
            uri = f"seg{said.sequence}.ts"
            try:
                _write_atomically(self._dir / uri, said.data)
            except OSError as exc:
                self._write_failed(exc, gap=False)
                for written in listed:
                    (self._dir / written.uri).unlink(missing_ok=True)
                return ()
            listed.append(
                Segment(
                    sequence=said.sequence,
                    uri=uri,
                    duration=said.duration,
                    discontinuity=(
                        before is not None
                        and said.discontinuity_number != before.discontinuity_number
                    ),
                    program_date_time=(
                        said.program_date_time if self._options.program_date_time else None
                    ),
                    independent=said.independent,
                )
            )
        self.inherited_segments += len(listed)
        return tuple(listed)

    def _write_listed(self) -> None:
        """The playlist of what is listed, slid to the window first (what slides
        out is retired: its file stays for `retain_extra` more segments)."""
        self._listed, dropped, self._discontinuity_sequence = slide_window(
            self._listed, self._options.window_segments, self._discontinuity_sequence
        )
        for old in dropped:
            self._ends.pop(old.sequence, None)
        self._write_playlist()
        self._retired.extend(dropped)

    def publish_provisional(self) -> None:
        """No fence answer (the old owner crashed or is out of reach): publish
        the provisional numbers; they are above the old owner's."""
        with self._lock:
            if self._awaiting_fence:
                self._awaiting_fence = False
                if self._listed:
                    self._write_playlist()
                self._release_unpublished(None)

    def _release_unpublished(self, numbers: dict[int, int] | None) -> None:
        """Report the held segments with their final numbers (`numbers`: the
        follow-on's renumbering, whose absentees the old owner covered; None:
        the provisional numbers stand)."""
        held, self._unpublished = self._unpublished, []
        if self._on_published is None:
            return
        first = True
        for report in held:
            if numbers is not None:
                if report.sequence not in numbers:
                    continue
                report = dataclasses.replace(
                    report,
                    sequence=numbers[report.sequence],
                    discontinuity=report.discontinuity or first,
                )
            first = False
            self._on_published(report)

    def _rename(self, old: str, new: str) -> None:
        try:
            os.replace(self._dir / old, self._dir / new)
        except OSError as exc:  # that one segment is missing; the player skips it
            self._write_failed(exc, gap=False)

    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        """Start a source session whose packets refer to `templates` by index."""
        if self._segment_packets:
            self.end()  # what the previous session left becomes its last segment
        if self._sessions:
            self._pending_discontinuity = True
        self._sessions += 1
        self._source_templates = list(templates)
        # Copy the codec parameters into a muxer this writer owns: the source's
        # container may be closed (its streams freed) before our last flush.
        # Never written to: a small I/O buffer (PyAV's default is 32 KiB) keeps
        # ~25 KB per stream off the heap (bench/README.md, part 3).
        self._own_templates = av.open(
            io.BytesIO(), "w", format="mpegts", buffer_size=TEMPLATE_BUFFER_SIZE
        )
        self._templates = [self._own_templates.add_stream_from_template(t) for t in templates]
        self._video_index = next(
            (i for i, s in enumerate(self._templates) if s.type == "video"), None
        )
        self._ts = (
            None
            if self._options.segment_type == "fmp4"
            else TsMuxer.for_codecs(
                [(coding_format(t), bytes(t.codec_context.extradata or b"")) for t in templates]
            )
        )
        self._drop_segment()
        self._segment_start = None
        self._starts_on_keyframe = True
        self._last_time = None
        self._last_dts = {}
        self._init_uri = None

    def write(self, index: int, packet: Packet) -> None:
        """Take one packet of template `index` (timestamps in its time base)."""
        if packet.dts is None:
            return  # flush packets carry no data and no timestamp
        # The time base as two integers, read once: PyAV hands it out as a new
        # Fraction, and Fraction arithmetic per packet (pure Python) was the
        # largest single cost of the writer (bench/README.md, worker profile).
        if type(packet) is Frame:
            num, den = 1, 1000
        else:
            base = packet.time_base
            if base is None:
                raise TypeError("packet has a dts but no time base")
            num, den = base.numerator, base.denominator
        previous = self._last_dts.get(index)
        if previous is not None and _timeline_jumped(packet.dts - previous[0], num, den):
            log.info("%s: source timestamps jumped; continuing as a new session", self._dir.name)
            self.timeline_jumps += 1
            self.begin(self._source_templates)  # ends this session's segment, marks a discontinuity
            previous = None
        if previous is not None and packet.dts <= previous[0]:
            if (
                packet.dts == previous[0]
                and previous[1] is not None
                and self._held_bytes + packet.size <= self._max_bytes
            ):
                # RTP depacketizers may split one access unit (SPS/PPS, then
                # the slice) into packets with one timestamp: join them.
                self._join(previous[1], packet)
            else:
                self.dropped_packets += 1  # timestamps going back: unmuxable
            return
        seconds = ticks_to_seconds(packet.dts, num, den)
        is_video = index == self._video_index
        keyframe = (is_video and packet.is_keyframe) or self._video_index is None
        if self._segment_start is None:
            if not keyframe:
                return  # a segment must start on a keyframe to be playable alone
            self._start_segment(seconds, on_keyframe=True)
        else:
            length = seconds - self._segment_start
            if keyframe and length >= self._options.segment_seconds - CUT_SLACK:
                self._flush(seconds)
                self._start_segment(seconds, on_keyframe=True)
            else:
                full = self._held_bytes + packet.size + PACKET_OVERHEAD > self._max_bytes
                if full or length >= self._max_seconds:
                    # At most one segment per segment duration of wall time
                    # (sequence.py relies on it): a publisher faster than that
                    # loses packets at the byte cap instead.
                    wall = self._clock() - (self._segment_wall or 0.0)
                    if wall >= self._options.segment_seconds - CUT_SLACK:
                        self._cut_at_cap(seconds, length)
                    elif full:
                        self.dropped_packets += 1
                        # Still its timeline: a later packet is no jump for the gap.
                        self._last_dts[index] = (packet.dts, None)
                        return
        if not self._segment_packets:
            self._streaming = self._ts is not None and type(packet) is Frame
        elif self._streaming and type(packet) is not Frame:
            # A session's packets are all Frames (the RTMP source) or all
            # av.Packets (PyAV's sources); tsmux.py cannot write an av.Packet.
            self.dropped_packets += 1
            return
        self._held.append((index, packet))
        self._segment_packets += 1
        self._held_bytes += packet.size + PACKET_OVERHEAD
        self._last_dts[index] = (packet.dts, self._held_base + len(self._held) - 1)
        if is_video or self._video_index is None:
            self._last_time = seconds
        if self._streaming and len(self._held) > DRAIN_FRAMES:
            self._drain()

    def _start_segment(self, seconds: float, *, on_keyframe: bool) -> None:
        self._segment_start = seconds
        self._segment_wall = self._clock()
        self._starts_on_keyframe = on_keyframe

    def _cut_at_cap(self, seconds: float, length: float) -> None:
        """The held segment reached a cap without a keyframe: cut it here anyway."""
        self.forced_cuts += 1
        if self.forced_cuts == 1 or self.forced_cuts % 100 == 0:
            log.warning(
                "%s: no keyframe for %.1f s (%d KiB held): cutting the segment without one"
                " (%d such cuts); set the camera's keyframe interval to at most %d s",
                self._dir.name,
                length,
                self._held_bytes // 1024,
                self.forced_cuts,
                self._options.segment_seconds,
            )
        self._flush(seconds, forced=True)
        self._start_segment(seconds, on_keyframe=False)

    def end(self, *, keep_last: bool = True) -> None:
        """Close the session: what is held becomes a (shorter) last segment,
        unless it is shorter than MIN_LAST_SEGMENT_SECONDS.

        keep_last=False: the stream moved away, so what is held is dropped; a
        segment written now would carry a number ahead of what the new owner
        continues with.
        """
        if (
            keep_last
            and self._segment_packets
            and self._last_time is not None
            and self._segment_start is not None
        ):
            end = self._last_time + 1 / 25  # the last frame's own duration, about
            if end - self._segment_start >= MIN_LAST_SEGMENT_SECONDS:
                self._flush(end)
            else:
                self.stub_segments_dropped += 1
        self._drop_segment()
        self._segment_start = None

    def close(self) -> None:
        pass  # nothing runs between sessions

    def remove_files(self) -> None:
        """Delete the stream's folder content (the stream was deleted)."""
        for path in self._dir.glob("*"):
            if path.is_file():
                path.unlink(missing_ok=True)
        try:
            self._dir.rmdir()
        except OSError:
            pass

    def _join(self, position: int, packet: Packet) -> None:
        slot = position - self._held_base  # the last packet of its track: never muxed yet
        index, first = self._held[slot]
        parts = self._joined.get(position, 1)
        if parts >= MAX_JOINED_PACKETS:
            self.dropped_packets += 1  # a flood of one timestamp, not an access unit
            return
        self._joined[position] = parts + 1
        self._held_bytes += packet.size
        keyframe = first.is_keyframe or packet.is_keyframe
        joined: Packet
        if isinstance(first, Frame):
            # Length-prefixed NAL units (AVCC) concatenate as they are.
            joined = Frame(first.data + bytes(packet), first.dts, first.pts, keyframe)
        else:
            joined = av.Packet(bytes(first) + bytes(packet))
            joined.time_base = first.time_base
            joined.pts, joined.dts = first.pts, first.dts
            joined.is_keyframe = keyframe
        self._held[slot] = (index, joined)

    def _drain(self) -> None:
        """Mux the held frames no later packet can join (all but each track's last)."""
        assert self._ts is not None
        upto = min(
            (at for _, at in self._last_dts.values() if at is not None),
            default=self._held_base + len(self._held),
        )
        count = upto - self._held_base
        if count > 0:
            self._mux_frames(count)
        if self._pending_bytes >= SPILL_BYTES:
            self._spill()

    def _mux_frames(self, count: int) -> None:
        """Mux the first `count` held frames onto the segment's pending bytes."""
        assert self._ts is not None
        held = self._held
        if not self._tables_done:
            self._tables_done = True
            self._ts.tables(self._pending)
        refused = self._ts.refused
        muxed = held[:count]
        self._ts.frames(self._pending, muxed)  # type: ignore[arg-type]  # all Frames
        self._count_refused(refused)
        del held[:count]
        self._held_base += count
        self._pending_bytes += sum(packet.size for _, packet in muxed)  # less TS framing

    def _spill(self) -> None:
        """Append the pending bytes to the segment's temporary file."""
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        if self._spill_error is not None:
            return  # the segment is lost already; its cut says so
        path = self._partial
        try:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self._spilled else os.O_TRUNC)
            data = b"".join(pending)  # one copy: writev of ~1,000 small pieces costs more
            fd = os.open(path, flags, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._spilled += len(data)
        except OSError as exc:  # out of descriptors, disk full
            self._spill_error = exc
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _drop_segment(self) -> None:
        """Forget the current segment (written or dropped): held packets, partial file."""
        self._held_base += len(self._held)
        self._held = []
        self._held_bytes = 0
        self._joined = {}
        self._segment_packets = 0
        if self._spilled:  # a partial file that was not renamed
            with contextlib.suppress(OSError):
                os.unlink(self._partial)
        self._streaming = self._tables_done = False
        self._pending = []
        self._pending_bytes = self._spilled = 0
        self._spill_error = None

    def _count_refused(self, before: int) -> None:
        """Malformed frames tsmux.py left out since `before` (PyAV's muxer would have
        failed on them): the segment is written without them, and they count as dropped."""
        assert self._ts is not None
        if self._ts.refused == before:
            return
        previously = self.malformed_frames
        self.malformed_frames += self._ts.refused - before
        self.dropped_packets += self._ts.refused - before
        if previously == 0 or previously // 100 != self.malformed_frames // 100:
            log.warning(
                "%s: malformed frame left out of a segment (%s; %d so far)",
                self._dir.name,
                self._ts.last_refusal,
                self.malformed_frames,
            )

    def _flush(self, end_seconds: float, *, forced: bool = False) -> None:
        with self._lock:
            self._flush_locked(end_seconds, forced=forced)

    def _flush_locked(self, end_seconds: float, *, forced: bool) -> None:
        assert self._segment_start is not None
        if self._fenced:
            self._last_dts = {i: (dts, None) for i, (dts, _) in self._last_dts.items()}
            self._drop_segment()  # the new owner publishes this moment
            return
        duration = max(end_seconds - self._segment_start, 0.001)
        cut_at = self._clock()  # the next segment needs a full duration from here
        if self._first_number is not None:
            first = self._first_number.resolve(cut_at, self._options.segment_seconds)
            self._next_sequence = max(self._next_sequence, first)
            self._first_number = None
        sequence = self._next_sequence
        self._last_dts = {i: (dts, None) for i, (dts, _) in self._last_dts.items()}
        if self._streaming:
            self._flush_streamed(sequence, duration, cut_at, forced)
            return
        held = self._held
        self._drop_segment()
        init: bytes | None = None
        try:
            if self._options.segment_type == "fmp4":
                init, data = fmp4.mux_fragment(self._templates, [(i, to_av(p)) for i, p in held])
                if self._init_uri is None:
                    # One per session: codecs may change. A follow_on may have
                    # renumbered a session below a name still in use.
                    in_use = {s.init_uri for s in (*self._retired, *self._listed)}
                    init_uri = next(
                        name
                        for k in itertools.count()
                        if (name := f"init{sequence}{f'-{k}' if k else ''}.mp4") not in in_use
                    )
                    _write_atomically(self._dir / init_uri, init)
                    self._init_uri = init_uri
                uri = f"seg{sequence}.m4s"
            else:
                data = self._mux(held)
                uri = f"seg{sequence}.ts"
            _write_atomically(self._dir / uri, data)
        except OSError as exc:
            self._write_failed(exc)
            return
        self._written(sequence, uri, duration, cut_at, forced, len(data), data, init)

    def _flush_streamed(self, sequence: int, duration: float, cut_at: float, forced: bool) -> None:
        """Cut a segment written as it goes: mux what is held, append, rename."""
        self.ts_segments += 1
        self._mux_frames(len(self._held))
        self._spill()
        error, size = self._spill_error, self._spilled
        uri = f"seg{sequence}.ts"
        if error is None:
            try:
                os.replace(self._partial, os.path.join(self._dir_str, uri))
                # Renamed: nothing left to remove (an unlink of the gone partial
                # file failed with ENOENT at every cut, a wasted system call).
                self._spilled = 0
            except OSError as exc:
                error = exc
        self._drop_segment()  # the partial file is renamed, or removed
        if error is not None:
            self._write_failed(error)
            return
        data = b""
        if self._keep_data:
            try:
                data = (self._dir / uri).read_bytes()
            except OSError:
                pass  # written and listed; only its copy for the recorder is missing
        self._written(sequence, uri, duration, cut_at, forced, size, data, None)

    def _written(
        self,
        sequence: int,
        uri: str,
        duration: float,
        cut_at: float,
        forced: bool,
        size: int,
        data: bytes,
        init: bytes | None,
    ) -> None:
        """A segment is on disk: list it and report it."""
        if not self._counted:
            # This writer's first segment: its discontinuity number is its
            # sequence number (see "Discontinuity numbers" above).
            self._discontinuity_sequence = sequence - int(self._pending_discontinuity)
            self._counted = True
        segment = Segment(
            sequence=sequence,
            uri=uri,
            duration=duration,
            discontinuity=self._pending_discontinuity,
            program_date_time=self._segment_wall if self._options.program_date_time else None,
            init_uri=self._init_uri,
            independent=self._starts_on_keyframe,
        )
        self._pending_discontinuity = False
        self._next_sequence += 1
        self._ends[sequence] = cut_at
        self._publish(segment)
        report = SegmentWritten(
            sequence=sequence,
            duration=duration,
            size=size,
            discontinuity=segment.discontinuity,
            discontinuity_sequence=self._discontinuity_sequence,
            written_at=cut_at,
            forced=forced,
            data=data,
            started_at=self._segment_wall if self._segment_wall is not None else cut_at,
            init=init,
        )
        if self._on_segment is not None:
            self._on_segment(report)
        if self._on_published is None:
            return
        if self._awaiting_fence:
            self._unpublished.append(report)
            # Older ones leave the window (their files go at the follow-on).
            del self._unpublished[: -self._options.window_segments]
        else:
            self._on_published(report)

    def _write_failed(self, exc: OSError, *, gap: bool = True) -> None:
        """A segment (or the playlist) could not be written: out of descriptors, disk full.

        The camera is not to blame and its connection must not die of it:
        the segment is dropped and the next one written marks the gap as a
        discontinuity (`gap`). A playlist not written is written with the next.
        """
        self.failed_writes += 1
        self._pending_discontinuity = self._pending_discontinuity or gap
        if self.failed_writes == 1 or self.failed_writes % 100 == 0:
            log.warning(
                "%s: cannot write a segment (%s); dropped (%d so far)",
                self._dir.name,
                os.strerror(exc.errno or 0) if exc.errno else type(exc).__name__,
                self.failed_writes,
            )

    def _publish(self, segment: Segment) -> None:
        self._listed = (*self._listed, segment)
        self._write_listed()
        while len(self._retired) > self._retain_extra:
            old = self._retired.pop(0)
            (self._dir / old.uri).unlink(missing_ok=True)
            still_used = {s.init_uri for s in (*self._retired, *self._listed)}
            if old.init_uri is not None and old.init_uri not in still_used:
                (self._dir / old.init_uri).unlink(missing_ok=True)

    def _write_playlist(self) -> None:
        if self._awaiting_fence:
            return  # provisional numbers: see "The fence" above
        listed = self._listed
        self._target = max(self._target, target_duration(listed, self._options.segment_seconds))
        text = render_media_playlist(
            listed, target=self._target, discontinuity_sequence=self._discontinuity_sequence
        )
        try:
            _write_atomically(self._dir / wire.PLAYLIST, text.encode())
        except OSError as exc:  # the next segment's playlist lists this one too
            self._write_failed(exc, gap=False)

    def _mux(self, packets: list[tuple[int, Packet]]) -> bytes:
        if self._ts is not None and all(type(packet) is Frame for _, packet in packets):
            refused = self._ts.refused
            data = self._ts.segment(packets)  # type: ignore[arg-type]  # all Frames
            self.ts_segments += 1
            self._count_refused(refused)
            return data
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts") as muxer:
            outputs = [muxer.add_stream_from_template(t) for t in self._templates]
            for index, held in packets:
                packet = to_av(held)
                packet.stream = outputs[index]
                muxer.mux(packet)
        return buffer.getvalue()


def ticks_to_seconds(ticks: int, num: int, den: int) -> float:
    """`ticks` of time base num/den (den > 0) in seconds: float(ticks * Fraction(num, den)).

    Bit for bit: Python's int / int is correctly rounded, as is float() of a
    Fraction, and both round the same exact quotient. No Fraction is built.
    """
    return ticks * num / den


def _timeline_jumped(step: int, num: int, den: int) -> bool:
    """Whether a dts step of `step` ticks (time base num/den, den > 0) is a new timeline.

    Exact, in integers: step * num / den < -JUMP_BACK_SECONDS, or > JUMP_AHEAD_SECONDS,
    with both sides multiplied by den and by the limits' own denominators.
    """
    scaled = step * num
    return (
        scaled * _JUMP_BACK[1] < -_JUMP_BACK[0] * den
        or scaled * _JUMP_AHEAD[1] > _JUMP_AHEAD[0] * den
    )


# The jump limits as exact ratios of integers (1.0 → (1, 1)), for _timeline_jumped.
_JUMP_BACK = JUMP_BACK_SECONDS.as_integer_ratio()
_JUMP_AHEAD = JUMP_AHEAD_SECONDS.as_integer_ratio()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a disk that filled up mid-write
        raise


def _next_sequence_on_disk(playlist: Path) -> int | None:
    """The sequence after the last segment of a playlist left by an earlier run."""
    try:
        text = playlist.read_text()
    except (OSError, UnicodeDecodeError):  # not there, or not ours: start afresh
        return None
    first = None
    count = 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            try:
                first = int(line.split(":", 1)[1])
            except ValueError:
                return None
        elif line and not line.startswith("#"):
            count += 1
    return None if first is None else first + count
