"""Clips of recorded time: one MP4 file, remuxed with PyAV and streamed as it is made.

Who calls this: the recordings route `clip.mp4` with the merged timeline of
the range asked for. Nothing is decoded: the recorded MPEG-TS packets are
copied into a fragmented MP4 (moov first, then a fragment per keyframe), so
the first bytes leave before the last segment is fetched and no seek back
is needed.

A clip may span a handoff or a reconnect: the timeline's discontinuities cut
it into runs, each from one source session with its own timestamps. Each
run gets its own demuxer, and its timestamps are shifted so that it starts
where the previous run ended: the MP4 has one continuous timeline.

Threads: the event loop fetches byte ranges from the store into a bounded
queue per run (`_Feed`, read by the demuxer), the remux runs in a worker
thread, and the MP4's bytes come back through `on_bytes` on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence

import av
from av.bitstream import BitStreamFilterContext

from camstream.recording.timeline import Chosen
from camstream.storage import StorageError
from camstream.storage.base import ObjectStore

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
FEED_DEPTH = 4  # byte ranges held per run: a few segments, never the whole clip
# Between two runs (a reconnect or a change of owner), so that no packet of the
# next run can land before the last of the previous one.
RUN_GAP_SECONDS = 0.1


class _Feed:
    """A file-like object the demuxer reads, filled from the event loop (no seek: a stream)."""

    def __init__(self, cancelled: threading.Event) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=FEED_DEPTH)
        self._buffer = b""
        self._done = False
        self._cancelled = cancelled

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            if self._cancelled.is_set():
                self._done = True
                break
            try:
                chunk = self.chunks.get(timeout=0.5)
            except queue.Empty:
                continue
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class _Sink:
    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit

    def write(self, data: bytes) -> int:
        self._emit(bytes(data))
        return len(data)


def runs_of(chosen: Sequence[Chosen]) -> list[list[Chosen]]:
    """The timeline cut at its discontinuities."""
    runs: list[list[Chosen]] = []
    for item in chosen:
        if not runs or item.discontinuity:
            runs.append([])
        runs[-1].append(item)
    return runs


def _fetches(run: Sequence[Chosen]) -> list[tuple[str, int, int]]:
    """(object, start, end) byte ranges, neighbours in one object joined."""
    out: list[tuple[str, int, int]] = []
    for item in run:
        key, entry = item.piece.object_key, item.piece.entry
        if out and out[-1][0] == key and out[-1][2] == entry.offset:
            out[-1] = (key, out[-1][1], entry.offset + entry.size)
        else:
            out.append((key, entry.offset, entry.offset + entry.size))
    return out


def _adts_config(packet: bytes) -> bytes | None:
    """MP4's AudioSpecificConfig (2 bytes) from an ADTS header, or None if it is not one.

    MPEG-TS carries AAC with an ADTS header per frame; MP4 wants raw frames and
    the configuration once, in the track's header (written before any frame).
    """
    if len(packet) < 7 or packet[0] != 0xFF or packet[1] & 0xF0 != 0xF0:
        return None
    profile = packet[2] >> 6
    rate_index = (packet[2] >> 2) & 0x0F
    channels = ((packet[2] & 0x01) << 2) | (packet[3] >> 6)
    return (((profile + 1) << 11) | (rate_index << 7) | (channels << 3)).to_bytes(2, "big")


class _Remux:
    """The remux loop over the runs of a clip (in a thread)."""

    def __init__(self, sink: _Sink) -> None:
        self.output = av.open(sink, "w", format="mp4", options={"movflags": MOVFLAGS})
        self.streams: dict[str, av.stream.Stream] = {}
        self.end_time = 0.0  # seconds: where the next run starts in the clip
        self.written = 0
        self.refused = 0
        # Until the audio track's configuration is known nothing may be muxed
        # (the first mux writes the MP4 header): packets wait here.
        self.held: list[tuple[av.Packet, av.stream.Stream]] = []
        self.configured = True

    def run(self, feeds: Sequence[_Feed]) -> int:
        try:
            for feed in feeds:
                self._one_run(feed)
            self._release()
        finally:
            self.output.close()
        return self.written

    def _one_run(self, feed: _Feed) -> None:
        try:
            source = av.open(feed, "r", format="mpegts")
        except av.FFmpegError:
            return  # an empty or unreadable run: skipped, the rest goes on
        with source:
            inputs = [s for s in source.streams if s.type in ("video", "audio")]
            if not self.streams:
                # One video and one audio track, from the first run that has them.
                for stream in inputs:
                    if stream.type not in self.streams:
                        self.streams[stream.type] = self.output.add_stream_from_template(stream)
                self.configured = "audio" not in self.streams
            audio = next((s for s in inputs if s.type == "audio"), None)
            adts = BitStreamFilterContext("aac_adtstoasc", audio) if audio is not None else None
            offset: float | None = None
            for packet in source.demux(*inputs):
                if packet.dts is None:
                    continue  # flush packets carry no data
                target = self.streams.get(packet.stream.type)
                if target is None:
                    continue  # a track the clip's first run did not have
                base = packet.time_base
                if offset is None:  # this run starts just after the last one
                    gap = RUN_GAP_SECONDS if self.written or self.held else 0.0
                    offset = self.end_time + gap - float(packet.dts * base)
                shift = round(offset / float(base))
                packet.dts += shift
                if packet.pts is not None:
                    packet.pts += shift
                self.end_time = max(
                    self.end_time, float((packet.dts + (packet.duration or 0)) * base)
                )
                packets = [packet]
                if packet.stream.type == "audio" and adts is not None:
                    config = _adts_config(bytes(packet))
                    if config is not None:
                        if not self.configured:
                            target.codec_context.extradata = config
                            self.configured = True
                        packets = adts.filter(packet)  # ADTS headers off
                for out in packets:
                    self.held.append((out, target))
                if self.configured:
                    self._release()

    def _release(self) -> None:
        for packet, target in self.held:
            packet.stream = target  # re-assign: the muxer rescales to its time base
            try:
                self.output.mux(packet)
            except av.ArgumentError:
                self.refused += 1  # out of order: one packet lost, not the clip
                continue
            self.written += 1
        self.held = []


async def stream_clip(
    store: ObjectStore, chosen: Sequence[Chosen], on_bytes: Callable[[bytes], Awaitable[None]]
) -> int:
    """Remux `chosen` into an MP4 and hand its bytes to `on_bytes` as they come."""
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()
    runs = runs_of(chosen)
    feeds = [_Feed(cancelled) for _ in runs]
    produced: asyncio.Queue[bytes | None] = asyncio.Queue()

    def emit(data: bytes) -> None:
        loop.call_soon_threadsafe(produced.put_nowait, data)

    sink = _Sink(emit)

    def remux() -> int:
        try:
            return _Remux(sink).run(feeds)
        finally:
            loop.call_soon_threadsafe(produced.put_nowait, None)

    async def fetch() -> None:
        try:
            for run, feed in zip(runs, feeds, strict=True):
                for key, start, end in _fetches(run):
                    data = await store.get_range(key, start, end)
                    await asyncio.to_thread(feed.chunks.put, data)
                await asyncio.to_thread(feed.chunks.put, None)
        except StorageError as exc:
            log.warning("clip cut short: the store failed (%s)", exc)
            cancelled.set()

    remuxing = loop.run_in_executor(None, remux)
    fetching = asyncio.ensure_future(fetch())
    try:
        while (data := await produced.get()) is not None:
            await on_bytes(data)
        return await remuxing
    finally:
        cancelled.set()  # a viewer who went away stops the fetches and the remux
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching
