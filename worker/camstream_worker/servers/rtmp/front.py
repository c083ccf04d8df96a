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
owner did: both sides' chunk streams stay consistent. What an ingest edge
sends (a connect vouched for with the edge's token, protocols/rtmp/forwarded.py)
is never relayed: the edge routes by the ring itself and feeds a handoff's
target beside the serving owner, so a target whose own ring has not caught
up must refuse the publish (the edge calls again) rather than pass it to
the serving owner, where it replaced the edge's own publisher and restarted
the stream's session (#15: a SIGKILLed worker's restart handed streams back
through a ping-pong of replaced publishers). A relay follows the
ring: once `owner(key)` names another worker (or `is_mine(key)` this one) it
is dropped, and the publisher, reconnecting as cameras do, lands on the
current owner. The old owner usually drops it first by stopping the stream;
it cannot when it is cut off from the API server and does not know it lost
the stream (#14).

Until the hand-over a client is a stranger here as in the engine (limits.py):
the same global and per-address caps (admission.py, sized from this
process's descriptors), `handshake_timeout` to get through its connect,
small messages; refusals are counted and logged alike (refusals.py). The
accept loop survives running out of descriptors (acceptor.py) and says so
through `accepting`, which the worker's /readyz reports.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import chunks, forwarded, handshake, messages, paths
from camstream_worker.servers.rtmp import relay
from camstream_worker.servers.rtmp.acceptor import Acceptor
from camstream_worker.servers.rtmp.admission import Admission, address_key
from camstream_worker.servers.rtmp.limits import Limits, connection_cap
from camstream_worker.servers.rtmp.refusals import Refusals

log = logging.getLogger(__name__)

MAX_CONNECT_BYTES = 64 * 1024  # a connect is ~200 bytes
RELAY_PATIENCE = 3.0  # seconds a publisher waits for an owner that refuses (it just died)
RELAY_RETRY = 0.25

# Where another worker serves a stream's publishers (host, port); None: here.
RtmpOwner = Callable[[StreamKey], "tuple[str, int] | None"]


class Router(Protocol):
    """Who takes a connection that is for this worker (the process pool)."""

    @property
    def processes(self) -> int: ...

    def hand_over(
        self, app: str, sock: socket.socket, received: bytes, connected_at: float
    ) -> None:
        """Pass the socket, after its handshake, with the bytes read since, to its engine.

        `connected_at`: time.monotonic() of the TCP connect (the system's one
        clock), so the engine's deadline to publish counts the time spent here.
        """
        ...


class RtmpFront:
    def __init__(
        self,
        router: Router,
        host: str,
        port: int,
        *,
        owner: RtmpOwner | None = None,
        is_mine: Callable[[StreamKey], bool] | None = None,
        limits: Limits | None = None,
        edge_token: str | None = None,
    ) -> None:
        """`edge_token`: the ingest edge's shared secret (default: $CAMSTREAM_EDGE_TOKEN);
        a publish an edge vouches for with it goes to this worker's engine, never
        to another worker."""
        self._router = router
        self._owner = owner
        self._edge_token = edge_token if edge_token is not None else forwarded.token_from_env()
        self._is_mine = is_mine
        self.limits = limits or Limits()
        self.relayed = 0
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._acceptor: Acceptor | None = None
        self._task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.admission = Admission(
            connection_cap(self.limits.max_connections), self.limits.max_pending_per_address
        )
        self.refusals = Refusals(time.monotonic, log)

    @property
    def accepting(self) -> bool:
        """False while the port cannot accept (out of descriptors): the worker is not ready."""
        return self._acceptor is None or self._acceptor.accepting

    def stats(self) -> dict[str, int]:
        """The front's share: connections still in their handshake (or relayed), its refusals."""
        return {
            "connections": len(self._connections),
            "accepting": int(self.accepting),
            **self.refusals.stats(),
        }

    async def start(self) -> None:
        listener = socket.create_server((self.host, self.port), backlog=1024, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = Acceptor(listener, self._accepted, name="rtmp front")
        self._task = asyncio.create_task(self._acceptor.run())
        log.info(
            "rtmp: listening on %s:%d (front of %d engine processes, at most %d connections)",
            self.host,
            self.port,
            self._router.processes,
            self.admission.max_connections,
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._listener is not None:
            self._listener.close()

    def _accepted(self, client: socket.socket, peer: str) -> None:
        address = address_key(peer.rpartition(":")[0].strip("[]"))
        refusal = self.admission.admit(address)
        if refusal is not None:
            client.close()
            self.refusals.refuse(refusal, f"rtmp {peer}", f"refused ({refusal})")
            return
        task = asyncio.create_task(self._route(client, peer, address, time.monotonic()))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _route(
        self, client: socket.socket, peer: str, address: str, connected_at: float
    ) -> None:
        pending = True
        limits = self.limits
        try:
            async with asyncio.timeout(limits.handshake_timeout):
                app, received, props = await handshake_and_connect(client, limits)
            from_edge = forwarded.vouched_client(props, self._edge_token) is not None
            remote = None if from_edge else self._remote_owner(app)
            if remote is not None:
                self.relayed += 1
                stream = paths.stream_of_app(app)
                log.info("rtmp %s: relaying %s to its owner %s", peer, stream, remote[0])
                # The owner judges it from here on; here it only holds two sockets.
                self.admission.published(address)
                pending = False
                if await self._relay(client, received, app, remote):
                    return
                # The ring names this worker now: it takes the publisher itself.
            try:
                self._router.hand_over(app, client, received, connected_at)
            except OSError as exc:  # its engine process is restarting: not the client's fault
                self.refusals.refuse(
                    "capacity", f"rtmp {peer}", f"no engine process took it ({type(exc).__name__})"
                )
        except TimeoutError:
            self.refusals.refuse(
                "timeout",
                f"rtmp {peer}",
                f"closed before publishing: no connect within {limits.handshake_timeout:g} s",
            )
        except chunks.ChunkTooLarge as exc:
            self.refusals.refuse("too_large", f"rtmp {peer}", f"closed before publishing: {exc}")
        except (OSError, ValueError, AssertionError) as exc:
            self.refusals.refuse(
                "protocol", f"rtmp {peer}", f"closed before publishing: {type(exc).__name__}"
            )
        finally:
            client.close()  # the engine process holds its own descriptor now
            self.admission.release(address, pending=pending)

    async def _relay(
        self, client: socket.socket, received: bytes, app: str, remote: tuple[str, int]
    ) -> bool:
        """Relay to the owner; False when, meanwhile, the ring named this worker."""
        patience = asyncio.get_running_loop().time() + RELAY_PATIENCE
        while True:
            try:
                await relay.relay(
                    client,
                    received,
                    remote,
                    still_owner=functools.partial(self._still_owner, app, remote),
                )
                return True
            except ConnectionRefusedError:
                # Nobody listens where the ring says: the owner has just died,
                # and the ring is about to name another. Wait for it rather
                # than drop a camera that may take seconds to come back.
                if asyncio.get_running_loop().time() >= patience:
                    raise
                await asyncio.sleep(RELAY_RETRY)
                now = self._remote_owner(app)
                if now is None:
                    return False
                remote = now

    def _still_owner(self, app: str, relayed_to: tuple[str, int]) -> bool:
        """False once the ring names another owner (another worker, or this one).

        An owner the ring names without an address (unknown) keeps the relay.
        """
        now = self._remote_owner(app)
        if now is not None:
            return now == relayed_to
        key = paths.stream_of_app(app)
        return not (key is not None and self._is_mine is not None and self._is_mine(key))

    def _remote_owner(self, app: str) -> tuple[str, int] | None:
        key = paths.stream_of_app(app)
        if self._owner is None or key is None:
            return None
        return self._owner(key)


async def handshake_and_connect(
    client: socket.socket, limits: Limits
) -> tuple[str, bytes, dict[str, object]]:
    """Do the plain RTMP handshake and read up to the client's connect command.

    Returns the connect's app, every byte received after C2 and the
    connect's properties. The front and the ingest edge (camstream_worker/edge)
    greet every client with it.
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
    decoder = chunks.ChunkDecoder(
        max_message_size=limits.pre_publish_max_message,
        max_pending_bytes=limits.pre_publish_max_pending,
    )
    pending = decoder.feed(bytes(received))
    while True:
        for message in pending:
            props = messages.connect_props(message)
            if props is not None:
                return str(props.get("app", "")), bytes(received), props
        if len(received) > MAX_CONNECT_BYTES:
            raise ValueError("no connect command")
        chunk = await loop.sock_recv(client, 65536)
        if not chunk:
            raise ValueError("closed before connect")
        received.extend(chunk)
        pending = decoder.feed(chunk)
