"""RTMP ingest server: one port, many concurrent publishers, keyed by stream.

Cameras, OBS and FFmpeg push ``rtmp://HOST:PORT/APP/NAME`` to the worker. The
worker starts one ``RtmpServer`` per engine and gives it the engine's
``Authorizer``: for
each ``publish`` the server hands over the raw app and stream name (the stream
key is the name, ``live/KEY``, or a query parameter, ``name?key=KEY``) and the
authorizer answers with the stream's ``PublishSink`` or ``None`` to refuse.
Everything the publisher sends then reaches that sink as codec configurations,
media packets and metadata (see protocols/rtmp/flv.py), and ``on_close`` ends it exactly once.
The per-connection state machine and its policies are in ``connection.py``;
the log-safe stream names in ``protocols/rtmp/names.py``. The listener is
each connection's ``Host`` (connection.py): a connection uses nothing of it
but that interface.

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

from camstream_worker.servers.rtmp.connection import (
    Authorizer,
    Counters,
    Limits,
    RtmpConnection,
)

__all__ = ["RtmpServer"]

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 10.0  # seconds between log lines about refused connections


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
        self.authorize = authorize
        self.host = host
        self.port = port
        self.limits = Limits(read_batch_seconds, max_connections, handshake_timeout, idle_timeout)
        self.counters = Counters()
        self.loop: asyncio.AbstractEventLoop  # set by start(): the loop that serves
        self._server: asyncio.Server | None = None
        self._connections: set[RtmpConnection] = set()
        self._publishing: dict[tuple[str, str], RtmpConnection] = {}
        # Two generations of paused connections: one paused now is resumed on
        # the tick after next, so every pause lasts between 1/2 and 1 batch.
        self._resume_soon: list[RtmpConnection] = []
        self._resume_later: list[RtmpConnection] = []
        self._tick: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._refused_quietly = 0
        self._last_refusal_log = -REFUSAL_LOG_INTERVAL

    async def start(self) -> None:
        """Bind and listen; ``self.port`` is the bound port afterwards."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: RtmpConnection(self), self.host, self.port, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._housekeeping = self.loop.create_task(self._watch_deadlines())
        log.info("rtmp: listening on %s:%d", self.host, self.port)

    async def start_unbound(self) -> None:
        """Serve only connections handed over with `adopt` (no listening socket)."""
        self.loop = asyncio.get_running_loop()
        self._housekeeping = self.loop.create_task(self._watch_deadlines())

    async def adopt(self, sock: socket.socket, received: bytes) -> None:
        """Take over a connection whose handshake another process completed.

        `received` is everything the client sent after its C2 (the chunk
        stream from its first byte), so the session continues as if this
        server had done the handshake itself. Used by the worker's RTMP front
        (servers/rtmp/front.py) to hand a publisher to the engine process that
        owns its stream.
        """
        connection = RtmpConnection(self, handshake_done=True)
        await self.loop.connect_accepted_socket(lambda: connection, sock)
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
        for connection in list(self._connections):
            connection.close("server shutting down")
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
        counters = self.counters
        return {
            "connections": len(self._connections),
            "publishers": len(self._publishing),
            "connections_total": counters.connections_total,
            "publishes_total": counters.publishes_total,
            "rejected": counters.rejected,
            "protocol_errors": counters.protocol_errors,
            "timeouts": counters.timeouts,
            "reads": counters.reads,
            "bytes_received": counters.bytes_in,
        }

    # -- the Host interface of each connection

    def admit(self, connection: RtmpConnection) -> bool:
        self.counters.connections_total += 1
        if len(self._connections) < self.limits.max_connections:
            self._connections.add(connection)
            return True
        self.counters.rejected += 1
        self._refused_quietly += 1
        now = self.loop.time()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:  # a flood: one line, not one each
            log.warning(
                "rtmp: refused %d connection(s), last from %s: %d connections already open",
                self._refused_quietly,
                connection.peer,
                len(self._connections),
            )
            self._refused_quietly = 0
            self._last_refusal_log = now
        return False

    def forget(self, connection: RtmpConnection) -> None:
        self._connections.discard(connection)

    def claim(self, identity: tuple[str, str], connection: RtmpConnection) -> RtmpConnection | None:
        previous = self._publishing.get(identity)
        self._publishing[identity] = connection
        return previous

    def release(self, identity: tuple[str, str], connection: RtmpConnection) -> None:
        if self._publishing.get(identity) is connection:
            del self._publishing[identity]

    def resume_later(self, connection: RtmpConnection) -> None:
        self._resume_later.append(connection)
        if self._tick is None:
            self._tick = self.loop.call_later(self.limits.read_batch_seconds / 2, self._on_tick)

    def _on_tick(self) -> None:
        due, self._resume_soon, self._resume_later = self._resume_soon, self._resume_later, []
        for connection in due:
            connection.resume_batch()
        if self._resume_soon:
            self._tick = self.loop.call_later(self.limits.read_batch_seconds / 2, self._on_tick)
        else:
            self._tick = None

    async def _watch_deadlines(self) -> None:
        limits = self.limits
        period = min(1.0, max(0.05, min(limits.handshake_timeout, limits.idle_timeout) / 4))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for connection in list(self._connections):
                connection.check_deadlines(now)
