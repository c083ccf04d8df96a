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
every read (one shared timer then reads them all, each socket directly: its
transport stays paused, since pausing and resuming it per batch cost two
epoll_ctl calls per read), so the kernel gathers a few KB per read: at
1 Mbit/s, ~90 reads/s per stream without batching, ~22 with the default
60 ms batches (a pause lasts between half a batch and a whole one).
``stats()["reads"]`` counts the reads.

What it holds every client to is limits.py's; here it keeps what is shared
between connections: the admission caps (admission.py; the global one sized
from the descriptor limit), the key gate (keygate.py), the refusal counters
(refusals.py), an accept loop that survives running out of descriptors
(acceptor.py), and the clock deadlines are judged on, which leaves out the
event loop's own stalls (clocks.py): each housekeeping tick measures how
late it woke up.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.servers.rtmp.acceptor import Acceptor
from camstream_worker.servers.rtmp.admission import Admission
from camstream_worker.servers.rtmp.clocks import StallClock
from camstream_worker.servers.rtmp.connection import (
    Authorizer,
    Counters,
    RtmpConnection,
)
from camstream_worker.servers.rtmp.keygate import KeyGate
from camstream_worker.servers.rtmp.limits import Limits, connection_cap
from camstream_worker.servers.rtmp.refusals import Refusals

__all__ = ["RtmpServer"]

log = logging.getLogger(__name__)

HOUSEKEEPING_PERIOD = 1.0  # deadlines checked, the loop's stalls measured


class RtmpServer:
    """The listener: accepts connections and owns the shared timers, caps and counters."""

    def __init__(
        self,
        authorize: Authorizer,
        host: str = "127.0.0.1",
        port: int = 1935,
        *,
        limits: Limits | None = None,
        edge_token: str | None = None,
        **overrides: float | int | None,
    ) -> None:
        """`overrides`: fields of `limits` to change (read_batch_seconds=0, ...).

        `edge_token`: the ingest edge's shared secret (default: $CAMSTREAM_EDGE_TOKEN),
        with which an edge vouches for its cameras' addresses (protocols/rtmp/forwarded.py).
        """
        self.authorize = authorize
        self.edge_token = edge_token if edge_token is not None else forwarded.token_from_env()
        self.host = host
        self.port = port
        self.limits = (limits or Limits()).replace(**overrides)
        self.counters = Counters()
        self.loop: asyncio.AbstractEventLoop  # set by start(): the loop that serves
        self._stall_clock = StallClock()
        self.refusals = Refusals(self.clock, log)
        self.admission: Admission  # set by start(), when the descriptor limit is known
        self.key_gate: KeyGate
        self._listener: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._connections: set[RtmpConnection] = set()
        self._publishing: dict[tuple[str, str], RtmpConnection] = {}
        # Two generations of paused connections: one paused now is resumed on
        # the tick after next, so every pause lasts between 1/2 and 1 batch.
        self._resume_soon: list[RtmpConnection] = []
        self._resume_later: list[RtmpConnection] = []
        self._tick: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and listen; ``self.port`` is the bound port afterwards."""
        self._prepare()
        listener = socket.create_server((self.host, self.port), backlog=1024)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = Acceptor(listener, self._accepted, name="rtmp")
        self._accepting = self.loop.create_task(self._acceptor.run())
        log.info(
            "rtmp: listening on %s:%d (at most %d connections)",
            self.host,
            self.port,
            self.admission.max_connections,
        )

    async def start_unbound(self) -> None:
        """Serve only connections handed over with `adopt` (no listening socket)."""
        self._prepare()

    def _prepare(self) -> None:
        self.loop = asyncio.get_running_loop()
        limits = self.limits
        self.admission = Admission(
            connection_cap(limits.max_connections), limits.max_pending_per_address
        )
        self.key_gate = KeyGate(limits.key_failure_pause, self.loop.time)
        self._housekeeping = self.loop.create_task(self._watch_deadlines())

    @property
    def accepting(self) -> bool:
        """False while the port cannot accept (out of descriptors): the worker is not ready."""
        return self._acceptor is None or self._acceptor.accepting

    def _accepted(self, sock: socket.socket, peer: str) -> None:
        task = self.loop.create_task(self._serve(sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: RtmpConnection(self), sock)
        except OSError:
            sock.close()

    async def adopt(self, sock: socket.socket, received: bytes, *, age: float = 0.0) -> None:
        """Take over a connection whose handshake another process completed.

        `received` is everything the client sent after its C2 (the chunk
        stream from its first byte), so the session continues as if this
        server had done the handshake itself. Used by the worker's RTMP front
        (servers/rtmp/front.py) to hand a publisher to the engine process that
        owns its stream. `age`: seconds since the client connected (its
        deadline to publish counts them).
        """
        connection = RtmpConnection(self, handshake_done=True, age=age)
        await self.loop.connect_accepted_socket(lambda: connection, sock)
        if received:
            connection.data_received(received)

    async def close(self) -> None:
        """Stop listening and close every connection (their sinks see the reason)."""
        if self._accepting is not None:
            self._accepting.cancel()
        if self._listener is not None:
            self._listener.close()
        for task in list(self._adopting):
            task.cancel()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for connection in list(self._connections):
            connection.close("server shutting down")
        for running in (self._accepting, self._housekeeping):
            if running is not None:
                try:
                    await running
                except asyncio.CancelledError:
                    pass
        self._accepting = self._housekeeping = None

    def stats(self) -> dict[str, int]:
        """Counters for metrics: current gauges and totals since start."""
        counters = self.counters
        return {
            "connections": len(self._connections),
            "publishers": len(self._publishing),
            "connections_total": counters.connections_total,
            "publishes_total": counters.publishes_total,
            "reads": counters.reads,
            "bytes_received": counters.bytes_in,
            "pings_ignored": counters.pings_ignored,
            "stalled_ms": int(self._stall_clock.stalled * 1000),
            **self.refusals.stats(),
            **({"accepting": int(self.accepting)} if self._acceptor is not None else {}),
        }

    # -- the Host interface of each connection

    def clock(self) -> float:
        return self._stall_clock.time(self.loop.time())

    @property
    def stalled(self) -> float:
        return self._stall_clock.stalled

    def admit(self, connection: RtmpConnection) -> str | None:
        self.counters.connections_total += 1
        refusal = self.admission.admit(connection.address)
        if refusal is None:
            self._connections.add(connection)
        return refusal

    def readdress(self, connection: RtmpConnection, address: str) -> None:
        if connection in self._connections and connection.stranger:
            self.admission.move_pending(connection.address, address)

    def published(self, connection: RtmpConnection) -> None:
        self.admission.published(connection.address)

    def forget(self, connection: RtmpConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self.admission.release(connection.address, pending=connection.stranger)

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
        # resume_batch reads, and a connection that read asks to be resumed
        # later (resume_later) from inside this loop: that schedules the next tick.
        self._tick = None
        for connection in due:
            connection.resume_batch()
        if self._tick is None and self._resume_soon:
            self._tick = self.loop.call_later(self.limits.read_batch_seconds / 2, self._on_tick)

    async def _watch_deadlines(self) -> None:
        limits = self.limits
        # Often enough for the shortest deadline; every connection is visited.
        period = min(
            HOUSEKEEPING_PERIOD, max(0.05, min(limits.handshake_timeout, limits.idle_timeout) / 4)
        )
        clock = self._stall_clock
        while True:
            clock.expect(self.loop.time() + period)
            await asyncio.sleep(period)
            late = clock.woke(self.loop.time())
            if late > 1.0:
                log.warning("rtmp: the event loop stalled %.1f s; deadlines discount it", late)
            now = self.clock()
            for connection in list(self._connections):
                connection.check_deadlines(now)
