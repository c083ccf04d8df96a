"""An ABR ladder: the source re-encoded to smaller renditions, beside the passthrough copy.

Who calls this: the stream's session (an `Output`, see outputs/base.py), for
streams with `transcode.enabled`. The stream's folder then holds a master
playlist (index.m3u8) listing `source/` (the untouched remux) and one folder
per rendition (e.g. `720p/`, `360p/`), each a media playlist of its own, so a
phone on a weak link can step down.

Decoding and encoding cost real CPU (unlike remuxing) and must never hold up
the source's reader, which for RTMP is the event loop every other stream
shares. So a transcoder runs in its own thread behind a bounded queue; when it
falls behind, whole GOPs are dropped (counted in `dropped`), never the source.
Audio is not re-encoded: each rendition carries a copy of the source's AAC.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from camstream import wire
from camstream.spec import HlsOptions, Rendition
from camstream_worker.media import decoder_for
from camstream_worker.outputs.hls.playlist import Variant, render_master_playlist
from camstream_worker.outputs.hls.sequence import FirstNumber
from camstream_worker.outputs.hls.writer import HlsWriter
from camstream_worker.packets import Packet

log = logging.getLogger(__name__)

SOURCE_FOLDER = "source"
QUEUE_PACKETS = 500  # ~10 s of 25 fps video + audio
ENCODER_TIME_BASE = Fraction(1, 90000)
AUDIO_BANDWIDTH = 128_000
# The source variant's BANDWIDTH must be its peak segment bit rate (RFC 8216
# 4.3.4.2). It is measured from the segments once a few are written, with
# headroom, and raised whenever a segment goes above it.
MEASURE_AFTER_SEGMENTS = 3
BANDWIDTH_HEADROOM = 1.1


@dataclass(frozen=True, slots=True)
class _Session:
    templates: tuple[av.stream.Stream, ...]
    owner: av.container.OutputContainer  # keeps the copied templates alive


class Transcoder:
    def __init__(
        self,
        directory: Path,
        renditions: Sequence[Rendition],
        options: HlsOptions,
        *,
        start_sequence: int | FirstNumber = 0,
        log_prefix: str = "",
        await_fence: bool = False,
    ) -> None:
        """`await_fence`: a handoff's new owner; every rendition's writer waits
        for the fence (writer.py), see `writers`."""
        self._dir = directory
        self.renditions = self._renditions = tuple(renditions)
        self._writers = [
            HlsWriter(
                directory / r.name, options, start_sequence=start_sequence, await_fence=await_fence
            )
            for r in self._renditions
        ]
        self._gop = 2 * options.segment_seconds
        self._prefix = log_prefix
        self._queue: queue.Queue[tuple[str, object] | None] = queue.Queue(QUEUE_PACKETS)
        self._thread = threading.Thread(target=self._work, name="transcode", daemon=True)
        self._thread.start()
        self._skipping = False
        self.dropped = 0
        self.errors = 0
        self._master_lock = threading.Lock()
        self._picture: tuple[int | None, int | None] = (None, None)
        self._source_bandwidth = 0
        self._measured = False
        self._source_segments = 0
        self._source_peak = 0

    @property
    def writers(self) -> dict[str, HlsWriter]:
        """Each rendition's writer by the rendition's name (its folder): the
        stream fences them and has them follow on at a handoff (stream.py)."""
        return {r.name: w for r, w in zip(self._renditions, self._writers, strict=True)}

    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        # Copy now, in the caller's thread: the source may free its streams
        # (close its container) long before this thread gets to them.
        owner = av.open(io.BytesIO(), "w", format="mpegts")
        copies = tuple(owner.add_stream_from_template(t) for t in templates)
        self._put(("begin", _Session(copies, owner)), force=True)
        self._first_master(templates)

    def write(self, index: int, packet: Packet) -> None:
        """Queue a packet (any thread); under overload drop until the next keyframe."""
        if self._skipping and not packet.is_keyframe:
            self.dropped += 1
            return
        self._skipping = not self._put(("packet", (index, _copy(packet))))

    def end(self, *, keep_last: bool = True) -> None:
        self._put(("end" if keep_last else "discard", None), force=True)

    def close(self) -> None:
        self._put(None, force=True)
        self._thread.join(timeout=10)

    def _first_master(self, templates: Sequence[av.stream.Stream]) -> None:
        """The master playlist of a new session, with a first guess of the source's rate.

        The source's own rate is not known before it has run a while (it is
        advertised once measured): until then, two steps above the top
        rendition keeps players from picking it on a guess.
        """
        video = next((t for t in templates if t.type == "video"), None)
        context: Any = video.codec_context if video is not None else None
        picture = (
            (context.width or None, context.height or None) if context is not None else (None, None)
        )
        top = max(r.video_bitrate_kbps for r in self._renditions)
        with self._master_lock:
            self._picture = picture
            if not self._measured:
                self._source_bandwidth = 2 * top * 1000
            self._write_master()

    def source_segment_written(self, size: int, duration: float) -> None:
        """Account one segment of the source variant; advertise its measured peak rate."""
        rate = int(size * 8 / max(duration, 0.1))
        with self._master_lock:
            self._source_segments += 1
            self._source_peak = max(self._source_peak, rate)
            if self._source_segments < MEASURE_AFTER_SEGMENTS:
                return
            if self._measured and self._source_peak <= self._source_bandwidth:
                return  # still within what is advertised: no rewrite
            self._measured = True
            self._source_bandwidth = int(self._source_peak * BANDWIDTH_HEADROOM)
            self._write_master()

    def _write_master(self) -> None:
        width, height = self._picture
        variants = [
            Variant(f"{SOURCE_FOLDER}/{wire.PLAYLIST}", self._source_bandwidth, width, height)
        ]
        for rendition in self._renditions:
            rendition_width = _even(width * rendition.height / height) if width and height else None
            variants.append(
                Variant(
                    f"{rendition.name}/{wire.PLAYLIST}",
                    rendition.video_bitrate_kbps * 1000 + AUDIO_BANDWIDTH,
                    rendition_width,
                    rendition.height,
                )
            )
        text = render_master_playlist(variants)
        temporary = self._dir / f".{wire.PLAYLIST}.tmp"
        temporary.write_text(text)
        temporary.replace(self._dir / wire.PLAYLIST)

    def remove_files(self) -> None:
        for writer in self._writers:
            writer.remove_files()

    def _put(self, item: tuple[str, object] | None, *, force: bool = False) -> bool:
        try:
            if force:
                self._queue.put(item, timeout=5)
            else:
                self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    # -- the transcoding thread

    def _work(self) -> None:
        ladder: _Ladder | None = None
        while True:
            item = self._queue.get()
            if item is None:
                if ladder is not None:
                    ladder.end()
                return
            kind, value = item
            try:
                if kind == "begin":
                    if ladder is not None:
                        ladder.end()
                    assert isinstance(value, _Session)
                    ladder = _Ladder(value.templates, self._renditions, self._writers, self._gop)
                elif kind == "packet" and ladder is not None:
                    index, packet = value  # type: ignore[misc]
                    ladder.feed(index, packet)  # type: ignore[has-type]
                elif kind in ("end", "discard") and ladder is not None:
                    ladder.end(keep_last=kind == "end")
                    ladder = None
            except (av.error.FFmpegError, ValueError) as exc:
                self.errors += 1
                if self.errors in (1, 10, 100, 1000):  # summarise, do not flood
                    log.warning("%stranscoding error %d: %s", self._prefix, self.errors, exc)


class _Ladder:
    """Decoder, scalers and encoders for one source session (transcoding thread only)."""

    def __init__(
        self,
        templates: Sequence[av.stream.Stream],
        renditions: Sequence[Rendition],
        writers: Sequence[HlsWriter],
        gop_seconds: int,
    ) -> None:
        self._video_index = next(i for i, t in enumerate(templates) if t.type == "video")
        video = templates[self._video_index]
        self._audio_index = next((i for i, t in enumerate(templates) if t.type == "audio"), None)
        self._decoder = decoder_for(video)
        self._scratch = av.open(io.BytesIO(), "w", format="mpegts")
        self._encoders: list[Any] = []  # video encoder streams
        self._writers = list(writers)
        fps = 25
        for rendition in renditions:
            encoder = self._scratch.add_stream("libx264", rate=fps)
            encoder.height = rendition.height
            encoder.width = 16  # replaced from the first decoded frame's aspect ratio
            encoder.pix_fmt = "yuv420p"
            encoder.bit_rate = rendition.video_bitrate_kbps * 1000
            encoder.codec_context.gop_size = gop_seconds * fps
            encoder.codec_context.time_base = ENCODER_TIME_BASE
            encoder.options = {"preset": "veryfast", "tune": "zerolatency", "sc_threshold": "0"}
            self._encoders.append(encoder)
        self._audio = templates[self._audio_index] if self._audio_index is not None else None
        self._started = False

    def feed(self, index: int, packet: av.Packet) -> None:
        if index == self._audio_index:
            if self._started:
                for writer in self._writers:
                    writer.write(1, _copy(packet))
            return
        if index != self._video_index:
            return
        for frame in self._decoder.decode(packet):
            self._encode(frame)

    def end(self, *, keep_last: bool = True) -> None:
        for writer in self._writers:
            writer.end(keep_last=keep_last)

    def _encode(self, frame: av.VideoFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        if not self._started:
            for encoder in self._encoders:
                encoder.width = _even(frame.width * encoder.height / frame.height)
            self._scratch.start_encoding()
            templates = [
                [encoder] + ([self._audio] if self._audio is not None else [])
                for encoder in self._encoders
            ]
            for writer, streams in zip(self._writers, templates, strict=True):
                writer.begin(streams)
            self._started = True
        pts = round(frame.pts * frame.time_base / ENCODER_TIME_BASE)
        for encoder, writer in zip(self._encoders, self._writers, strict=True):
            scaled = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
            scaled.pts = pts
            scaled.time_base = ENCODER_TIME_BASE
            for packet in encoder.encode(scaled):
                writer.write(0, packet)


def _copy(packet: Packet) -> av.Packet:
    """An independent packet: muxing rescales and re-targets packets in place."""
    copy = av.Packet(bytes(packet))
    copy.time_base = packet.time_base
    copy.pts, copy.dts = packet.pts, packet.dts
    copy.is_keyframe = packet.is_keyframe
    return copy


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)
