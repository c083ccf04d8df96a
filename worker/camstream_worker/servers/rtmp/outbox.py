"""What an RTMP connection sends, with flow control: nothing piles up for a client that never reads.

Who calls this: each RTMP connection (connection.py) writes through one
`Outbox` and forwards its transport's `pause_writing`/`resume_writing` to it.
A server that only receives sends little (handshake, command results,
acknowledgements, ping replies), but a client can ask for writes and never
read them (ping floods): asyncio's transport would queue them without end.

- Above `write_high_water` queued bytes (the transport calls pause_writing),
  optional writes (ping replies, acknowledgements) are skipped.
- A write that would queue more than `max_write_buffer` bytes is not made:
  the client is a slow reader and `on_slow_reader` drops it.
- Closing flushes what is queued (a refusal, say) for `close_grace` seconds
  at most, then aborts: a closed socket does not linger on a peer that never
  reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from camstream_worker.servers.rtmp.limits import Limits

__all__ = ["Outbox"]


class Outbox:
    def __init__(self, limits: Limits, on_slow_reader: Callable[[str], None]) -> None:
        self._limits = limits
        self._on_slow_reader = on_slow_reader
        self._transport: asyncio.Transport | None = None
        self.paused = False

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=self._limits.write_high_water)

    def write(self, data: bytes, *, optional: bool = False) -> bool:
        """Queue `data`; False if it was not (closing, optional while paused, too much queued)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        if optional and self.paused:
            return False
        if transport.get_write_buffer_size() + len(data) > self._limits.max_write_buffer:
            self._on_slow_reader(f"more than {self._limits.max_write_buffer} bytes left unread")
            transport.abort()
            return False
        transport.write(data)
        return True

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.close()  # flushes what is queued first...
        if transport.get_write_buffer_size():
            # ...but not forever.
            loop.call_later(self._limits.close_grace, transport.abort)
