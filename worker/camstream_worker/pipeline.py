"""The sink a source feeds: the HLS writer plus the live figures the supervisor watches.

Who calls this: a source, from its own thread (PyAV sources) or from the event
loop (RTMP). Counters are plain attributes written by one thread and read by
the event loop (single writes are atomic under the GIL); segment events reach
the loop through the writer's callback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import av

from camstream_worker.media import coding_format
from camstream_worker.outputs.hls.writer import HlsWriter
from camstream_worker.outputs.thumbnail import Thumbnailer
from camstream_worker.outputs.transcode import Transcoder


class PipelineSink:
    def __init__(
        self,
        writer: HlsWriter,
        thumbnailer: Thumbnailer | None = None,
        transcoder: Transcoder | None = None,
    ) -> None:
        self._writer = writer
        self._thumbnailer = thumbnailer
        self._transcoder = transcoder
        self._video_index: int | None = None
        self.bytes_in = 0
        self.packets = 0
        self.last_packet_at = time.monotonic()
        self.video_codec: str | None = None
        self.audio_codec: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.active = False
        self.closed = False

    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        if self.closed:
            return  # an abandoned source woke up: its session is over
        video = next((t for t in templates if t.type == "video"), None)
        audio = next((t for t in templates if t.type == "audio"), None)
        self.video_codec = coding_format(video) if video is not None else None
        self.audio_codec = coding_format(audio) if audio is not None else None
        if video is not None:
            context: Any = video.codec_context
            self.width = context.width or None
            self.height = context.height or None
        self.last_packet_at = time.monotonic()
        self.active = True
        self._video_index = next((i for i, t in enumerate(templates) if t.type == "video"), None)
        if self._thumbnailer is not None:
            self._thumbnailer.begin(video)
        self._writer.begin(templates)
        if self._transcoder is not None:
            self._transcoder.begin(templates)
            top = max(r.video_bitrate_kbps for r in self._transcoder.renditions)
            # The source's own rate is not known before it has run a while (the
            # transcoder advertises it once measured): until then, two steps
            # above the top rendition keeps players from picking it on a guess.
            self._transcoder.write_master(2 * top * 1000, self.width, self.height)

    def packet(self, index: int, packet: av.Packet) -> None:
        if self.closed:
            return
        self.bytes_in += packet.size
        self.packets += 1
        self.last_packet_at = time.monotonic()
        if self._thumbnailer is not None and index == self._video_index:
            self._thumbnailer.offer(packet)
        if self._transcoder is not None:
            self._transcoder.offer(index, packet)
        self._writer.write(index, packet)

    def end(self, *, keep_last: bool = True) -> None:
        """Close the session; call only once the source has stopped feeding.

        keep_last=False drops the unfinished segment instead of writing it.
        """
        self.closed = True
        if self.active and not keep_last:
            self._writer.discard()
        elif self.active:
            self._writer.end()
            if self._transcoder is not None:
                self._transcoder.end()
        self.active = False
