"""RTMP ingest server: one port, many concurrent publishers, keyed by stream.

Cameras, OBS and FFmpeg push ``rtmp://HOST:PORT/APP/NAME`` to the worker. The
worker's engine starts one ``RtmpServer`` and gives it an ``Authorizer``: for
each ``publish`` the server hands over the raw app and stream name (the stream
key is the name, ``live/KEY``, or a query parameter, ``name?key=KEY``) and the
authorizer answers with the stream's ``PublishSink`` or ``None`` to refuse.
Everything the publisher sends then reaches that sink as codec configurations,
media packets and metadata (see ``flv``), and ``on_close`` ends it exactly once.
The per-connection state machine and its policies are in ``rtmp_connection``;
the log-safe stream names in ``protocols/rtmp/names.py``.

Cost: a receiver that reads each chunk header and body separately (FFmpeg's
own, hence PyAV's) makes ~2,200 read calls per second per stream. This
server takes whatever the kernel holds (up to 256 KiB) per read, and once a
connection is publishing it stops reading for ``read_batch_seconds`` after
every read (one shared timer resumes them all), so the kernel gathers a few
KB per read: at 1 Mbit/s, ~90 reads/s per stream without batching, ~30 with
30 ms batches. ``stats()["reads"]`` counts the reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from camstream_worker.ingest.rtmp_connection import (
    REFUSAL_LOG_INTERVAL,
    Authorizer,
    RtmpConnection,
)

__all__ = ["RtmpServer"]

log = logging.getLogger(__name__)


class RtmpServer:
    """The listener: accepts connections and owns the shared timers and counters."""

    def __init__(
        self,
        authorize: Authorizer,
        host: str = "127.0.0.1",
        port: int = 1935,
        *,
        read_batch_seconds: float = 0.03,
        max_connections: int = 10000,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 30.0,
    ) -> None:
        self._authorize = authorize
        self.host = host
        self.port = port
        self._read_batch = read_batch_seconds
        self._max_connections = max_connections
        self._handshake_timeout = handshake_timeout
        self._idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop  # set by start(): the loop that serves
        self._server: asyncio.Server | None = None
        self._conns: set[RtmpConnection] = set()
        self._publishing: dict[tuple[str, str], RtmpConnection] = {}
        # Two generations of paused connections: one paused now is resumed on
        # the tick after next, so every pause lasts between 1/2 and 1 batch.
        self._resume_soon: list[RtmpConnection] = []
        self._resume_later: list[RtmpConnection] = []
        self._tick: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._connections_total = 0
        self._refused_quietly = 0
        self._last_refusal_log = -REFUSAL_LOG_INTERVAL
        self._publishes_total = 0
        self._rejected = 0
        self._protocol_errors = 0
        self._timeouts = 0
        self._reads = 0
        self._bytes_in = 0

    async def start(self) -> None:
        """Bind and listen; ``self.port`` is the bound port afterwards."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: RtmpConnection(self), self.host, self.port, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._housekeeping = self._loop.create_task(self._watch_deadlines())
        log.info("rtmp: listening on %s:%d", self.host, self.port)

    async def start_unbound(self) -> None:
        """Serve only connections handed over with `adopt` (no listening socket)."""
        self._loop = asyncio.get_running_loop()
        self._housekeeping = self._loop.create_task(self._watch_deadlines())

    async def adopt(self, sock: socket.socket, received: bytes) -> None:
        """Take over a connection whose handshake another process completed.

        `received` is everything the client sent after its C2 (the chunk
        stream from its first byte), so the session continues as if this
        server had done the handshake itself. Used by the worker's RTMP front
        (worker/camstream_worker/shards.py) to hand a publisher to the engine
        process that owns its stream.
        """
        connection = RtmpConnection(self, handshake_done=True)
        await self._loop.connect_accepted_socket(lambda: connection, sock)
        if received:
            connection.data_received(received)

    async def close(self) -> None:
        """Stop listening and close every connection (their sinks see the reason)."""
        if self._server is not None:
            self._server.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for conn in list(self._conns):
            conn._close("server shutting down")
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._housekeeping is not None:
            try:
                await self._housekeeping
            except asyncio.CancelledError:
                pass
            self._housekeeping = None

    def stats(self) -> dict[str, int]:
        """Counters for metrics: current gauges and totals since start."""
        return {
            "connections": len(self._conns),
            "publishers": len(self._publishing),
            "connections_total": self._connections_total,
            "publishes_total": self._publishes_total,
            "rejected": self._rejected,
            "protocol_errors": self._protocol_errors,
            "timeouts": self._timeouts,
            "reads": self._reads,
            "bytes_received": self._bytes_in,
        }

    def _schedule_resume(self, conn: RtmpConnection) -> None:
        self._resume_later.append(conn)
        if self._tick is None:
            self._tick = self._loop.call_later(self._read_batch / 2, self._on_tick)

    def _on_tick(self) -> None:
        due, self._resume_soon, self._resume_later = self._resume_soon, self._resume_later, []
        for conn in due:
            conn.resume_batch()
        if self._resume_soon:
            self._tick = self._loop.call_later(self._read_batch / 2, self._on_tick)
        else:
            self._tick = None

    async def _watch_deadlines(self) -> None:
        period = min(1.0, max(0.05, min(self._handshake_timeout, self._idle_timeout) / 4))
        while True:
            await asyncio.sleep(period)
            now = self._loop.time()
            for conn in list(self._conns):
                conn.check_deadlines(now)
