"""The PyAV read loop shared by the sources FFmpeg can open (RTSP, files, HTTP).

Who calls this: rtsp.py, http.py and file.py, each in a thread of its own
(PyAV releases the GIL while it reads). It picks the first video and the
first usable audio stream, hands them to the sink as templates and forwards
their packets as they are: no decoding, so a stream costs little more than
the socket reads.

Whatever goes wrong while a pulled source opens reaches the stream's status
as the one uniform SourceUnreachable (errors.py says why); what really
happened is logged here, for the worker's operator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import av

from camstream_worker.errors import (
    MediaError,
    SourceEnded,
    SourceUnreachable,
    UnsupportedMedia,
    from_ffmpeg,
)
from camstream_worker.sources.base import AUDIO_CODECS, VIDEO_CODECS, PacketSink

log = logging.getLogger(__name__)


def remux_input(
    open_input: Callable[[], av.container.InputContainer],
    sink: PacketSink,
    stopping: threading.Event,
    *,
    realtime: bool = False,
    remote: bool = True,
    credentials: bool = False,
    log_prefix: str = "",
) -> None:
    """Read one input session into `sink`; raise a MediaError when it ends.

    `remote`: a camera on the network (see errors.from_ffmpeg); `credentials`:
    the stream gave it a username and password.
    """
    try:
        container = open_input()
    except Exception as exc:
        # `from None`: the FFmpeg exception quotes the URL, which may hold a password.
        raise _logged(
            from_ffmpeg(exc, opening=True, remote=remote, credentials=credentials), log_prefix
        ) from None
    with container:
        video = next((s for s in container.streams.video), None)
        if video is None and remote:
            # Something answered, but not a camera: as if nothing had.
            raise _logged(SourceUnreachable("opened, but it holds no video"), log_prefix)
        if video is None or video.codec_context.name not in VIDEO_CODECS:
            found = video.codec_context.name if video is not None else "no video"
            raise UnsupportedMedia(f"video codec {found} is not supported (h264, hevc)")
        audio = next(
            (s for s in container.streams.audio if s.codec_context.name in AUDIO_CODECS), None
        )
        for skipped in container.streams.audio:
            if skipped is not audio:
                log.info(
                    "%sskipping audio track with codec %s", log_prefix, skipped.codec_context.name
                )
        selected = [video] if audio is None else [video, audio]
        index_of = {stream.index: i for i, stream in enumerate(selected)}
        sink.begin(selected)
        pacer = _Pacer() if realtime else None
        try:
            for packet in container.demux(selected):
                if stopping.is_set():
                    return
                if packet.dts is None:
                    continue  # demuxer flush packets: no data to forward
                if pacer is not None:
                    pacer.wait(float(packet.dts * packet.time_base), stopping)
                sink.packet(index_of[packet.stream.index], packet)
        except Exception as exc:
            if stopping.is_set():
                return
            raise from_ffmpeg(exc, opening=False, remote=remote, credentials=credentials) from None
    raise SourceEnded("the source reached its end")


def _logged(error: MediaError, log_prefix: str) -> MediaError:
    """Log what the uniform SourceUnreachable hides from the status."""
    if isinstance(error, SourceUnreachable):
        log.info("%scould not open the source: %s", log_prefix, error.detail)
    return error


class _Pacer:
    """Holds a recording back to real time, as a live camera would send it."""

    def __init__(self) -> None:
        self._origin: tuple[float, float] | None = None

    def wait(self, media_seconds: float, stopping: threading.Event) -> None:
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, media_seconds)
            return
        ahead = (media_seconds - self._origin[1]) - (now - self._origin[0])
        if ahead > 0.005:
            stopping.wait(min(ahead, 1.0))
