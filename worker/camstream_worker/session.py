"""One source session of a stream: the sink its source feeds, fanned out to the stream's outputs.

Who calls this: the stream (stream.py) opens a `Session` each time its
supervisor runs the source; the source calls `begin` and `packet` from its own
thread (PyAV sources) or from the event loop (RTMP); the supervisor watches
`active` and `last_packet_at` and ends the session. Counters are plain
attributes written by one thread and read by the event loop (single writes
are atomic under the GIL).

    begin(templates) ──▶ packet(index, packet) ... ──▶ end(keep_last)
                                                          (closed: whatever an abandoned
                                                           source sends later goes nowhere)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import av

from camstream_worker.media import coding_format
from camstream_worker.outputs.base import Output
from camstream_worker.packets import Packet


class Session:
    def __init__(self, outputs: Sequence[Output]) -> None:
        self._outputs = tuple(outputs)
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
        for output in self._outputs:
            output.begin(templates)

    def packet(self, index: int, packet: Packet) -> None:
        if self.closed:
            return
        self.bytes_in += packet.size
        self.packets += 1
        self.last_packet_at = time.monotonic()
        for output in self._outputs:
            output.write(index, packet)

    def end(self, *, keep_last: bool = True) -> None:
        """Close the session; call only once the source has stopped feeding.

        keep_last=False drops the unfinished segment instead of writing it.
        """
        self.closed = True
        if self.active:
            for output in self._outputs:
                output.end(keep_last=keep_last)
        self.active = False
