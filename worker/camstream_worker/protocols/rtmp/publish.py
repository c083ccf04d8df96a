"""What one accepted RTMP publish feeds: the seam between the RTMP server and the stream.

Who calls this: the RTMP connection (``servers/rtmp/connection.py``) calls a
``PublishSink`` for everything an accepted publisher sends; the RTMP push
source (``sources/rtmp.py``) is the one the worker hands out, and tests
collect with their own. Calls come synchronously from the event loop: a sink
must not block.
"""

from __future__ import annotations

from typing import Protocol

from camstream_worker.protocols.rtmp.flv import MediaPacket, TrackConfig


class PublishSink(Protocol):
    """Receives one accepted publish."""

    def on_config(self, config: TrackConfig) -> None: ...
    def on_packet(self, packet: MediaPacket) -> None: ...
    def on_metadata(self, metadata: dict[str, object]) -> None: ...
    def on_close(self, reason: str | None) -> None:
        """None = clean unpublish or EOF; otherwise a readable reason (no secrets)."""
