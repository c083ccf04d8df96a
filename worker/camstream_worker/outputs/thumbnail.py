"""A periodic JPEG still of a stream, for index pages and camera walls.

Who calls this: the stream's session (an `Output`, see outputs/base.py), for
streams with `thumbnail.enabled`, with every packet. Only a video keyframe at
least `interval` seconds after the last still is decoded (keyframes decode
alone, so no decoder state runs between stills); the picture is encoded as
JPEG and written by rename, like the playlist. The cost is one decode and one
JPEG encode per interval, not per frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from camstream import wire
from camstream_worker.media import decoder_for
from camstream_worker.packets import Packet

log = logging.getLogger(__name__)

MAX_WIDTH = 640


class Thumbnailer:
    def __init__(
        self,
        directory: Path,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        log_prefix: str = "",
    ) -> None:
        self._path = directory / wire.THUMBNAIL
        self._interval = interval
        self._clock = clock
        self._prefix = log_prefix
        self._decoder: Any = None  # a video decoder; PyAV's stubs type it loosely
        self._video_index: int | None = None
        self._last: float | None = None
        self.written = 0

    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        """A new source session: a decoder for its video's codec parameters."""
        self._decoder = None
        self._video_index = next((i for i, t in enumerate(templates) if t.type == "video"), None)
        if self._video_index is not None:
            self._decoder = decoder_for(templates[self._video_index])

    def write(self, index: int, packet: Packet) -> None:
        """Consider one packet; decode it if it is a video keyframe and a still is due."""
        if index != self._video_index or self._decoder is None or not packet.is_keyframe:
            return
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        try:
            frames = self._decoder.decode(av.Packet(bytes(packet)))
            frames += self._decoder.decode(None)  # flush: this keyframe is all we want
            if frames:
                self._write(frames[-1])
        except (av.error.FFmpegError, ValueError) as exc:
            log.info("%sthumbnail skipped: %s", self._prefix, type(exc).__name__)
        finally:
            self._decoder = _fresh(self._decoder)

    def end(self, *, keep_last: bool = True) -> None:
        pass  # a still is written whole or not at all

    def close(self) -> None:
        self._decoder = None

    def remove_files(self) -> None:
        self._path.unlink(missing_ok=True)

    def _write(self, frame: av.VideoFrame) -> None:
        width, height = frame.width, frame.height
        if width > MAX_WIDTH:
            width, height = MAX_WIDTH, max(2, round(height * MAX_WIDTH / width / 2) * 2)
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = frame.time_base or Fraction(1, av.time_base)
        encoder.options = {"q:v": "5"}
        picture = frame.reformat(width=width, height=height, format="yuvj420p")
        data = b"".join(bytes(p) for p in encoder.encode(picture))
        temporary = self._path.with_name(f".{self._path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self._path)
        self.written += 1


def _fresh(decoder: Any) -> Any:
    """A decoder that was flushed cannot decode again: make a new one like it."""
    if decoder is None:
        return None
    fresh = av.CodecContext.create(decoder.name, "r")
    if decoder.extradata:
        fresh.extradata = decoder.extradata
    return fresh
