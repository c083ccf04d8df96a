"""The edge process's core: its listeners, their shared caps, and the drain.

Who calls this: cli.py makes one `Edge`, adds its listeners and runs it;
tests make one on loopback with a ring document of their own.

The listener set holds one listener per ingest protocol, under one readiness
and drain: `RtmpListener` here, and with --srt-port the SRT port
(srt_relay.py's `SrtRelay`, one UDP port for all streams), added with
`Edge.add_listener`.

What a stranger may do is the worker's RTMP ingest's (servers/rtmp), not a
copy: `Limits` (limits.py, the same environment variables), the global and
per-address caps (admission.py), the key gate (keygate.py), the refusal
counts and log (refusals.py), and the accept loop that survives running out
of descriptors (acceptor.py).

Drain (SIGTERM, the edge's own rolling update):

    serving ──drain(seconds)──▶ draining: readiness false, listeners closed,
                                live cameras kept
       draining ──all cameras gone, or `seconds` passed──▶ closed: the rest are
                                cut, and reconnect through the Service to another edge
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from camstream.handoff import RingDoc
from camstream_worker.edge.metrics import EdgeMetrics
from camstream_worker.edge.session import READ_SIZE, Session
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.servers.rtmp.acceptor import Acceptor
from camstream_worker.servers.rtmp.admission import Admission, address_key
from camstream_worker.servers.rtmp.keygate import KeyGate
from camstream_worker.servers.rtmp.limits import Limits, connection_cap
from camstream_worker.servers.rtmp.refusals import Refusals

__all__ = ["READ_BATCH_SECONDS", "Edge", "Listener", "RtmpListener"]

log = logging.getLogger(__name__)

# The edge reads each camera once per this many seconds (the worker: 0.03).
# Each read costs the same system calls and Python work whatever it holds,
# and a relay adds this much delay at most: 0.1 s is nothing beside 1-2 s
# segments, and 1 Mbit/s for 0.1 s (12.5 KB) fits any socket buffer. It
# took the edge from 0.18 to 0.12 % of a core per stream at N = 100 (bench/README.md).
READ_BATCH_SECONDS = 0.1


class Listener(Protocol):
    """One ingest port of the edge (RTMP here; SRT in srt_relay.py)."""

    name: str

    @property
    def accepting(self) -> bool: ...

    def connections(self) -> int: ...

    def publishing(self) -> int: ...

    async def start(self) -> None: ...

    def stop_accepting(self) -> None:
        """Close the port; live connections stay."""
        ...

    async def idle(self) -> None:
        """Return once no connection is left (after stop_accepting)."""
        ...

    async def close(self) -> None:
        """End every connection."""
        ...


class Edge:
    def __init__(
        self,
        *,
        ring: Callable[[], RingDoc | None],
        worker_rtmp_port: int,
        limits: Limits | None = None,
        edge_token: str | None = None,
    ) -> None:
        """`edge_token`: the secret with which the edge vouches for its cameras' addresses
        to the workers (default $CAMSTREAM_EDGE_TOKEN; none: the workers see the edge's)."""
        self.limits = limits or Limits().replace(read_batch_seconds=READ_BATCH_SECONDS)
        self.edge_token = edge_token if edge_token is not None else forwarded.token_from_env()
        self.worker_rtmp_port = worker_rtmp_port
        self._ring = ring
        self.metrics = EdgeMetrics()
        self.refusals = Refusals(time.monotonic, log)
        self.key_gate = KeyGate(self.limits.key_failure_pause, time.monotonic)
        self.admission = Admission(
            connection_cap(self.limits.max_connections), self.limits.max_pending_per_address
        )
        self.listeners: list[Listener] = []
        self.draining = False
        # Every session reads into this and decodes before it yields (session.py).
        self.read_buffer = bytearray(READ_SIZE)
        self._tick: asyncio.Future[None] | None = None
        self.metrics.watch(stats=self.stats)

    def ring(self) -> RingDoc | None:
        return self._ring()

    def tick(self) -> asyncio.Future[None]:
        """Done `read_batch_seconds` from the first ask: one timer for every camera.

        Each session reads its camera once per batch (session.py); a timer
        each would cost a heap operation per camera and read.
        """
        tick = self._tick
        if tick is None or tick.done():
            loop = asyncio.get_running_loop()
            tick = self._tick = loop.create_future()
            loop.call_later(self.limits.read_batch_seconds, _done, tick)
        return tick

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def start(self) -> None:
        for listener in self.listeners:
            await listener.start()

    @property
    def ready(self) -> bool:
        """Readiness: the ring is known, every port accepts, and the edge is not draining."""
        return (
            not self.draining
            and self._ring() is not None
            and all(listener.accepting for listener in self.listeners)
        )

    def connections(self) -> int:
        return sum(listener.connections() for listener in self.listeners)

    def stats(self) -> dict[str, int]:
        return {
            "connections": self.connections(),
            "publishing": sum(listener.publishing() for listener in self.listeners),
            "accepting": int(
                not self.draining and all(listener.accepting for listener in self.listeners)
            ),
            **self.refusals.stats(),
        }

    async def drain(self, seconds: float) -> None:
        """Stop accepting, keep live cameras up to `seconds`, then close them."""
        self.draining = True
        for listener in self.listeners:
            listener.stop_accepting()
        left = self.connections()
        log.info("edge: draining %d connections for up to %g s", left, seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                for listener in self.listeners:
                    await listener.idle()
        left = self.connections()
        if left:
            log.info(
                "edge: drain time over: closing %d connections; they reconnect elsewhere", left
            )
        await self.close()

    async def close(self) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
            await listener.close()


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RtmpListener:
    """The edge's RTMP port: admission, then one Session per camera."""

    name = "rtmp"

    def __init__(self, edge: Edge, host: str, port: int) -> None:
        self._edge = edge
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._task: asyncio.Task[None] | None = None
        self._sessions: dict[asyncio.Task[None], Session] = {}

    @property
    def accepting(self) -> bool:
        return self._task is not None and self._acceptor is not None and self._acceptor.accepting

    def connections(self) -> int:
        return len(self._sessions)

    def publishing(self) -> int:
        return sum(1 for session in self._sessions.values() if session.publishing)

    async def start(self) -> None:
        listener = socket.create_server((self.host, self.port), backlog=1024)
        listener.setblocking(False)
        self._socket = listener
        self.port = listener.getsockname()[1]
        self._acceptor = Acceptor(listener, self._accepted, name="rtmp edge")
        self._task = asyncio.create_task(self._acceptor.run())
        log.info(
            "edge: rtmp on %s:%d (at most %d connections)",
            self.host,
            self.port,
            self._edge.admission.max_connections,
        )

    def stop_accepting(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def idle(self) -> None:
        if self._sessions:
            await asyncio.wait(list(self._sessions))

    async def close(self) -> None:
        tasks = list(self._sessions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _accepted(self, client: socket.socket, peer: str) -> None:
        edge = self._edge
        address = address_key(peer.rpartition(":")[0].strip("[]"))
        refusal = edge.admission.admit(address)
        if refusal is not None:
            client.close()
            edge.refusals.refuse(refusal, f"rtmp edge {peer}", f"refused ({refusal})")
            return
        state = {"pending": True}

        def published() -> None:
            state["pending"] = False
            edge.admission.published(address)
            edge.metrics.publishes.inc()

        session = Session(edge, client, peer, address, on_published=published)
        task = asyncio.create_task(session.run())
        self._sessions[task] = session

        def done(task: asyncio.Task[None]) -> None:
            del self._sessions[task]
            edge.admission.release(address, pending=state["pending"])

        task.add_done_callback(done)
