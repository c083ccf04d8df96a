"""The public RTMP port of a worker that runs its engine in several processes.

Who calls this: the process pool (pool/sharded.py) starts one `RtmpFront` on
the worker's RTMP port; standalone and cluster mode reach it through the pool.
The front completes the handshake, reads the client's `connect` to learn the
app (`<namespace>/<name>` for URLs of the form rtmp://host/<namespace>/<name>/<key>,
see protocols/rtmp/paths.py), and then either hands the socket itself, with
the bytes read so far, to the process that owns the stream (its `Router`), or,
in a cluster, relays the connection to the worker that owns it (relay.py).
After the hand-over the front never touches the stream's bytes, so it costs
nothing per packet.

A publisher may reach any worker in a cluster (one Service in front of all of
them). Relaying works because nobody answered the client's connect before the
owner did: both sides' chunk streams stay consistent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import chunks, handshake, messages, paths
from camstream_worker.servers.rtmp import relay

log = logging.getLogger(__name__)

FRONT_TIMEOUT = 10.0
MAX_CONNECT_BYTES = 64 * 1024

# Where another worker serves a stream's publishers (host, port); None: here.
RtmpOwner = Callable[[StreamKey], "tuple[str, int] | None"]


class Router(Protocol):
    """Who takes a connection that is for this worker (the process pool)."""

    @property
    def processes(self) -> int: ...

    def hand_over(self, app: str, sock: socket.socket, received: bytes) -> None:
        """Pass the socket, after its handshake, with the bytes read since, to its engine."""
        ...


class RtmpFront:
    def __init__(
        self, router: Router, host: str, port: int, *, owner: RtmpOwner | None = None
    ) -> None:
        self._router = router
        self._owner = owner
        self.relayed = 0
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._protocol_errors = 0
        self._timeouts = 0

    def stats(self) -> dict[str, int]:
        """The front's share: connections still in their handshake, and its refusals."""
        return {
            "connections": len(self._connections),
            "protocol_errors": self._protocol_errors,
            "timeouts": self._timeouts,
        }

    async def start(self) -> None:
        listener = socket.create_server((self.host, self.port), backlog=1024, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._task = asyncio.create_task(self._accept_forever())
        log.info(
            "rtmp: listening on %s:%d (front of %d engine processes)",
            self.host,
            self.port,
            self._router.processes,
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._listener is not None:
            self._listener.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            client, address = await loop.sock_accept(self._listener)
            task = asyncio.create_task(self._route(client, f"{address[0]}:{address[1]}"))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _route(self, client: socket.socket, peer: str) -> None:
        try:
            async with asyncio.timeout(FRONT_TIMEOUT):
                app, received = await _handshake_and_connect(client)
            remote = self._remote_owner(app)
            if remote is not None:
                self.relayed += 1
                stream = paths.stream_of_app(app)
                log.info("rtmp %s: relaying %s to its owner %s", peer, stream, remote[0])
                await relay.relay(client, received, remote)
                return
            self._router.hand_over(app, client, received)
        except TimeoutError:
            self._timeouts += 1
            log.info(
                "rtmp %s: closed before publishing: no connect within %.0fs", peer, FRONT_TIMEOUT
            )
        except (OSError, ValueError, AssertionError) as exc:
            self._protocol_errors += 1
            log.info("rtmp %s: closed before publishing: %s", peer, type(exc).__name__)
        finally:
            client.close()  # the engine process holds its own descriptor now

    def _remote_owner(self, app: str) -> tuple[str, int] | None:
        key = paths.stream_of_app(app)
        if self._owner is None or key is None:
            return None
        return self._owner(key)


async def _handshake_and_connect(client: socket.socket) -> tuple[str, bytes]:
    """Do the plain RTMP handshake and read up to the client's connect command.

    Returns the connect's app and every byte received after C2.
    """
    loop = asyncio.get_running_loop()
    shake = handshake.ServerHandshake()
    while not shake.done:
        chunk = await loop.sock_recv(client, 65536)
        if not chunk:
            raise ValueError("closed during the handshake")
        reply = shake.feed(chunk)  # HandshakeError (a ValueError) for what is not RTMP
        if reply:
            await loop.sock_sendall(client, reply)
    received = bytearray(shake.rest)
    decoder = chunks.ChunkDecoder()
    pending = decoder.feed(bytes(received))
    while True:
        for message in pending:
            app = messages.connect_app(message)
            if app is not None:
                return app, bytes(received)
        if len(received) > MAX_CONNECT_BYTES:
            raise ValueError("no connect command")
        chunk = await loop.sock_recv(client, 65536)
        if not chunk:
            raise ValueError("closed before connect")
        received.extend(chunk)
        pending = decoder.feed(chunk)
