"""The worker's TCP port for its edges' SRT cameras: one connection per camera, proven.

Who calls this: the SRT service (hosting.py) starts one `EdgeLegPort` beside
the SRT listener, on the same port number over TCP, when the worker has an
edge token (CAMSTREAM_EDGE_TOKEN): the port is for the ingest edge only
(the chart's network policy admits the edge pods alone). The edge's relay
(edge/srt_relay.py) opens one connection per camera and owner.

Each connection, step by step (the lines: protocols/srt/edge_leg.py):

    accepted ── more than `max_connections` handshakes at once: closed at once
      → the challenge sent; the edge's line read (at most MAX_LINE bytes,
        within `handshake_timeout`) ── malformed or late: NO Malformed, closed
      → the stream's publication looked up and the proof checked ── not a
        stream taking SRT publishers here, or a proof that does not hold:
        NO Unauthorized, alike (a caller cannot learn which streams exist);
        a known stream's failure also has its passphrase read again
        (`stale`), since the edge may know a rotated one
      → OK; the socket, with nothing read past the line, goes to the stream's
        source as the SRT listener's sockets do (`deliver`): the edge sends its
        MPEG-TS from there on

What bounds a proven leg: one publisher per stream (the source keeps the
newest), the camera's caps at the edge's own SRT listener (bitrate, idle),
and the source's idle end (sources/srt.py) for an edge that vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable

from camstream.spec import StreamKey
from camstream_worker.protocols.srt import edge_leg
from camstream_worker.servers.srt.limits import SrtLimits
from camstream_worker.servers.srt.listener import Publication

__all__ = ["EdgeLegPort"]

log = logging.getLogger(__name__)


class EdgeLegPort:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str,
        lookup: Callable[[StreamKey], Publication | None],
        deliver: Callable[[StreamKey, str, socket.socket], None],
        stale: Callable[[StreamKey], None] = lambda key: None,
        limits: SrtLimits | None = None,
    ) -> None:
        """`lookup`: the stream's publication if it takes SRT publishers here. `deliver`: a
        proven leg's socket (the callee owns it) with the camera's "host:port". `stale`: a
        known stream's proof failed (read its passphrase again)."""
        self._host, self.port = host, port
        self._token = token
        self._lookup = lookup
        self._deliver = deliver
        self._stale = stale
        self._limits = limits or SrtLimits()
        self._listening: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self.counts = {"accepted": 0, "malformed": 0, "unauthorized": 0, "capacity": 0}

    async def start(self) -> None:
        """Bind and accept (OSError: the port is taken)."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((self._host, self.port))
            listening.listen(128)
            listening.setblocking(False)
        except BaseException:
            listening.close()
            raise
        self._listening = listening
        self.port = listening.getsockname()[1]
        self._acceptor = asyncio.create_task(self._accept(listening), name="srt edge leg port")

    def stats(self) -> dict[str, int]:
        """Legs by outcome (`leg_accepted`, `leg_refused_<reason>`)."""
        accepted = {"leg_accepted": self.counts["accepted"]}
        return accepted | {f"leg_refused_{k}": n for k, n in self.counts.items() if k != "accepted"}

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listening)
            except OSError as exc:  # out of descriptors: the edge calls again
                log.warning("srt edge leg: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._handshakes) >= self._limits.max_connections:
                self.counts["capacity"] += 1
                with contextlib.suppress(OSError):
                    conn.send(edge_leg.answer("Capacity"))
                conn.close()
                continue
            task = asyncio.create_task(self._handshake(conn, f"{peer[0]}:{peer[1]}"))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, edge: str) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        delivered = False
        try:
            async with asyncio.timeout(self._limits.handshake_timeout):
                request = await self._prove(loop, conn, edge)
                if request is not None:
                    await loop.sock_sendall(conn, edge_leg.answer(None))
                    self.counts["accepted"] += 1
                    delivered = self._hand_over(request, conn)
        except (TimeoutError, OSError):
            self.counts["malformed"] += 1
            log.info("srt edge leg: %s gave no leg request in time", edge)
        finally:
            if not delivered:
                conn.close()

    def _hand_over(self, request: edge_leg.Request, conn: socket.socket) -> bool:
        """Give a proven leg to the stream's source; False (logged) if that failed."""
        try:
            self._deliver(request.key, request.client, conn)
        except Exception:
            log.exception("[%s] srt edge leg: the leg could not be handed over", request.key)
            return False
        return True

    async def _prove(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, edge: str
    ) -> edge_leg.Request | None:
        """The edge's request if it proves itself; else None, the refusal counted and sent."""
        nonce = secrets.token_bytes(edge_leg.NONCE_BYTES)
        await loop.sock_sendall(conn, edge_leg.hello(nonce))
        line = await _read_line(loop, conn)
        try:
            request = edge_leg.parse_request(line)
        except edge_leg.LegError as exc:
            log.info("srt edge leg: refused %s: %s", edge, exc)
            await self._refuse(loop, conn, "Malformed")
            return None
        publication = self._lookup(request.key)
        if publication is not None and edge_leg.proven(
            self._token, publication.passphrase, nonce, request
        ):
            return request
        if publication is not None:
            self._stale(request.key)
        log.info("[%s] srt edge leg: refused %s: the proof does not hold", request.key, edge)
        await self._refuse(loop, conn, "Unauthorized")
        return None

    async def _refuse(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, reason: str
    ) -> None:
        self.counts[reason.lower()] += 1
        with contextlib.suppress(OSError):  # the peer may be gone already
            await loop.sock_sendall(conn, edge_leg.answer(reason))

    async def close(self) -> None:
        tasks = [t for t in (self._acceptor, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listening is not None:
            self._listening.close()


async def _read_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """One line, never more: the edge sends its stream only after OK."""
    line = b""
    while not line.endswith(b"\n") and len(line) < edge_leg.MAX_LINE:
        data = await loop.sock_recv(conn, edge_leg.MAX_LINE - len(line))
        if not data:
            break
        line += data
    return line
