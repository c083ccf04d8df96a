"""The one interface every source kind implements, and the sink it feeds.

Who calls this: pipeline.py runs one `Source` per stream under the supervisor.
A source knows how to get packets from one kind of camera; it knows nothing of
retries, backoff or watchdogs (the supervisor owns those) nor of HLS (the sink
does).

`run` returns only by raising: a source that ends raises SourceEnded, so the
supervisor's loop has one exit path to reason about.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import av

# PyAV codec names we can carry in MPEG-TS without decoding.
VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac"})


class PacketSink(Protocol):
    """Receives one source session: templates first, then their packets."""

    def begin(self, templates: Sequence[av.stream.Stream]) -> None: ...

    def packet(self, index: int, packet: av.Packet) -> None: ...


class Source(Protocol):
    """One camera, read until stopped or failed."""

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        """Feed `sink` until `stopping` is set (then return) or raise MediaError."""
        ...
