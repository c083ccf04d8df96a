"""A worker that uses every core: the engine split over child processes.

Who calls this: standalone and cluster mode, through the same interface as
`Engine` (apply, statuses, status, on_change, authorize nothing: RTMP goes
through the front below). Python threads contend for one GIL, so one process
tops out near one core; here each child process runs an `Engine` for the
streams that hash to it, and this parent keeps what must be shared:

- the desired set, split by `shard_of(key)`, re-sent to a child that crashed
  and was restarted (a segfault in one shard stops only its streams, briefly);
- the merged view of every stream's status (children report changes as they
  happen and a snapshot of their counters every second);
- Secrets: children ask the parent, which holds the resolver (Kubernetes
  client or the manifests), so credentials stay resolved in one place;
- the RTMP front: the one public RTMP port. It completes the handshake, reads
  the client's `connect` to learn the app (`<namespace>/<name>` for URLs of
  the form rtmp://host/<namespace>/<name>/<key>), and passes the socket
  itself (SCM_RIGHTS) with the bytes read so far to the owning child, which
  continues the session. After that the parent never touches the stream's
  bytes, so the front costs nothing per packet.

Children write HLS under the shared root, so the HTTP server in the parent
serves every stream's files directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import socket
import zlib
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from camstream.spec import StreamKey, StreamSpec
from camstream_worker import shard_child
from camstream_worker.errors import SecretError
from camstream_worker.ingest import amf0, rtmp_chunks
from camstream_worker.secrets import SecretResolver
from camstream_worker.sequence import SequenceStart
from camstream_worker.state import Phase, StreamStatus
from camstream_worker.worker_metrics import add_stats

log = logging.getLogger(__name__)

HANDSHAKE_SIZE = 1536
FRONT_TIMEOUT = 10.0
MAX_CONNECT_BYTES = 64 * 1024
RESTART_DELAY = 1.0
RELAY_RECHECK = 1.0  # seconds between checks that a relayed stream is still its owner's
RELAY_PATIENCE = 3.0  # seconds a publisher waits for an owner that refuses (it just died)
RELAY_RETRY = 0.25


def shard_of(key: StreamKey, shards: int) -> int:
    """The child that runs a stream: a stable hash (never Python's hash())."""
    return zlib.crc32(str(key).encode()) % shards


class ShardedEngine:
    def __init__(self, hls_root: Path, secrets: SecretResolver, processes: int) -> None:
        self.hls_root = hls_root
        self._secrets = secrets
        self._children = [_Child(index, hls_root, self) for index in range(processes)]
        self._statuses: dict[StreamKey, StreamStatus] = {}
        self._listeners: list[Callable[[StreamStatus], None]] = []
        self._desired: dict[StreamKey, StreamSpec] = {}
        self._closing = False

    @property
    def processes(self) -> int:
        return len(self._children)

    async def start(self) -> None:
        await asyncio.gather(*(child.start() for child in self._children))

    # -- Engine interface

    def statuses(self) -> list[StreamStatus]:
        return [self._status_of(key, spec) for key, spec in self._desired.items()]

    def status(self, key: StreamKey) -> StreamStatus | None:
        spec = self._desired.get(key)
        return None if spec is None else self._status_of(key, spec)

    def _status_of(self, key: StreamKey, spec: StreamSpec) -> StreamStatus:
        known = self._statuses.get(key)
        if known is not None:
            return known
        # Its child has not reported yet (just applied, or restarting after a crash).
        return StreamStatus(key=key, protocol=spec.source.protocol, phase=Phase.PENDING)

    def on_change(self, callback: Callable[[StreamStatus], None]) -> None:
        self._listeners.append(callback)

    async def apply(
        self,
        desired: Mapping[StreamKey, StreamSpec],
        *,
        start_sequences: Mapping[StreamKey, SequenceStart] | None = None,
    ) -> None:
        self._desired = dict(desired)
        sequences = dict(start_sequences or {})
        shares: list[dict[StreamKey, StreamSpec]] = [{} for _ in self._children]
        for key, spec in desired.items():
            shares[shard_of(key, len(self._children))][key] = spec
        await asyncio.gather(
            *(
                child.apply(share, {k: sequences[k] for k in share if k in sequences})
                for child, share in zip(self._children, shares, strict=True)
            )
        )
        for key in list(self._statuses):
            if key not in desired:
                del self._statuses[key]

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(child.close() for child in self._children))

    # -- RTMP front

    async def serve_rtmp(
        self,
        host: str,
        port: int,
        *,
        owner: RtmpOwner | None = None,
        is_mine: Callable[[StreamKey], bool] | None = None,
    ) -> RtmpFront:
        front = RtmpFront(self, host, port, owner=owner, is_mine=is_mine)
        await front.start()
        return front

    def rtmp_stats(self, front: RtmpFront | None = None) -> dict[str, int]:
        """RTMP counters of every child (and of the front), added up."""
        parts = [child.rtmp_stats for child in self._children]
        return add_stats(*parts, *([front.stats()] if front is not None else []))

    def child_for_app(self, app: str) -> _Child:
        key = _stream_of(app)
        if key is not None:
            return self._children[shard_of(key, len(self._children))]
        # rtmp://host/<namespace>/<name>?key=… gives only the namespace here:
        # such publishers can reach only the streams of the first child.
        log.info("rtmp: app %r names no stream; publish to /<namespace>/<name>/<key>", app)
        return self._children[0]

    # -- from children

    def _child_status(self, status: StreamStatus, *, changed: bool) -> None:
        if status.key not in self._desired:
            return
        self._statuses[status.key] = status
        if changed:
            for listener in self._listeners:
                try:
                    listener(status)
                except Exception:
                    log.exception("status listener failed")

    async def _resolve(self, namespace: str, ref: Any) -> tuple[bool, str]:
        try:
            return True, await self._secrets.get(namespace, ref)
        except SecretError as exc:
            return False, str(exc)


class _Child:
    """One engine process, restarted if it dies, with its share of the streams."""

    def __init__(self, index: int, hls_root: Path, parent: ShardedEngine) -> None:
        self.index = index
        self._hls_root = hls_root
        self._parent = parent
        self._process: multiprocessing.process.BaseProcess | None = None
        self._control: multiprocessing.connection.Connection | None = None
        self._handoff: socket.socket | None = None
        self._share: dict[StreamKey, StreamSpec] = {}
        self._sequences: dict[StreamKey, SequenceStart] = {}
        self._requests = itertools.count()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self.rtmp_stats: dict[str, int] = {}

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=True)
        handoff_parent, handoff_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = context.Process(
            target=shard_child.main,
            # Sockets and connections in args are duplicated into the child by
            # multiprocessing itself (file descriptor numbers do not survive spawn).
            args=(
                self.index,
                str(self._hls_root),
                child_end,
                handoff_child,
                logging.getLogger().level,
            ),
            name=f"camstream-engine-{self.index}",
            daemon=True,
        )
        process.start()
        log.info("engine process %d started (pid %s)", self.index, process.pid)
        child_end.close()
        handoff_child.close()
        self._process, self._control, self._handoff = process, parent_end, handoff_parent
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_end.fileno(), self._on_readable)
        if self._share:
            await self.apply(self._share, self._sequences)

    async def apply(
        self, share: dict[StreamKey, StreamSpec], sequences: dict[StreamKey, SequenceStart]
    ) -> None:
        self._share, self._sequences = share, sequences
        await self._request("apply", share, sequences)

    async def close(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._request("close"), 30)
        # The child's exit may already have detached us (EOF on the pipe).
        await asyncio.to_thread(process.join, 5)
        if process.is_alive():
            process.kill()
        self._detach()

    def hand_over(self, sock: socket.socket, received: bytes) -> None:
        """Give an RTMP connection (after its handshake) to this child."""
        assert self._handoff is not None
        socket.send_fds(self._handoff, [received], [sock.fileno()])

    async def _request(self, verb: str, *args: Any) -> None:
        number = next(self._requests)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        assert self._control is not None
        self._control.send((verb, number, *args))
        await future

    def _on_readable(self) -> None:
        assert self._control is not None
        try:
            message = self._control.recv()
        except (EOFError, OSError):
            self._on_exit()
            return
        kind = message[0]
        if kind == "status":
            self._parent._child_status(message[1], changed=True)
        elif kind == "snapshot":
            for status in message[1]:
                self._parent._child_status(status, changed=False)
        elif kind == "rtmp":
            self.rtmp_stats = message[1]
        elif kind == "done":
            future = self._waiting.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "secret":
            self._spawn(self._answer_secret(*message[1:]))

    async def _answer_secret(self, number: int, namespace: str, ref: Any) -> None:
        ok, value = await self._parent._resolve(namespace, ref)
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(("secret", number, ok, value))

    def _on_exit(self) -> None:
        code = self._process.exitcode if self._process is not None else None
        self._detach()
        for future in self._waiting.values():
            if not future.done():
                future.set_result(None)
        self._waiting.clear()
        if self._parent._closing:
            return
        log.error(
            "engine process %d died (exit %s); restarting its %d streams",
            self.index,
            code,
            len(self._share),
        )
        asyncio.get_running_loop().call_later(RESTART_DELAY, self._spawn, self.start())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def _detach(self) -> None:
        if self._control is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()
        if self._handoff is not None:
            self._handoff.close()
        self._control = self._handoff = None
        if self._process is not None:
            self._process.join(0)
        self._process = None


class RtmpFront:
    """The public RTMP port of a sharded worker (see the module docstring).

    In a cluster, a publisher may reach any worker (one Service in front of
    all of them). When `owner(key)` names another worker, the front relays the
    connection there: it completes a handshake of its own with the owner,
    replays the client's bytes from its connect on, and then copies bytes both
    ways. Both sides' chunk streams stay consistent because nobody answered
    the client's connect before the owner did. A relay follows the ring: when
    `owner(key)` names another worker (or `is_mine(key)` this one) it is
    dropped, and the publisher, reconnecting as cameras do, lands on the
    current owner. The
    old owner usually drops it first by stopping the stream; it cannot when it
    is cut off from the API server and does not know it lost the stream.
    """

    def __init__(
        self,
        engine: ShardedEngine,
        host: str,
        port: int,
        *,
        owner: RtmpOwner | None = None,
        is_mine: Callable[[StreamKey], bool] | None = None,
    ) -> None:
        self._engine = engine
        self._owner = owner
        self._is_mine = is_mine
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
            self._engine.processes,
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
            patience = asyncio.get_running_loop().time() + RELAY_PATIENCE
            while remote is not None:
                log.info("rtmp %s: relaying %s to its owner %s", peer, _stream_of(app), remote[0])
                try:
                    await _relay(
                        client,
                        received,
                        remote,
                        still_owner=functools.partial(self._still_owner, app, remote),
                    )
                    return
                except ConnectionRefusedError:
                    # Nobody listens where the ring says: the owner has just died,
                    # and the ring is about to name another. Wait for it rather
                    # than drop a camera that may take seconds to come back.
                    if asyncio.get_running_loop().time() >= patience:
                        raise
                    await asyncio.sleep(RELAY_RETRY)
                    remote = self._remote_owner(app)
            self._engine.child_for_app(app).hand_over(client, received)
        except TimeoutError:
            self._timeouts += 1
            log.info(
                "rtmp %s: closed before publishing: no connect within %.0fs", peer, FRONT_TIMEOUT
            )
        except (OSError, ValueError, AssertionError) as exc:
            self._protocol_errors += 1
            log.info("rtmp %s: closed before publishing: %s", peer, type(exc).__name__)
        finally:
            client.close()  # the child holds its own descriptor now

    def _still_owner(self, app: str, relayed_to: tuple[str, int]) -> bool:
        """False once the ring names another owner (another worker, or this one).

        An owner the ring names without an address (unknown) keeps the relay.
        """
        now = self._remote_owner(app)
        if now is not None:
            return now == relayed_to
        key = _stream_of(app)
        return not (key is not None and self._is_mine is not None and self._is_mine(key))

    def _remote_owner(self, app: str) -> tuple[str, int] | None:
        key = _stream_of(app)
        if self._owner is None or key is None:
            return None
        return self._owner(key)


RtmpOwner = Callable[[StreamKey], "tuple[str, int] | None"]


def _stream_of(app: str) -> StreamKey | None:
    """The stream an RTMP connect's app names (`<namespace>/<name>`), if it does."""
    parts = [p for p in app.partition("?")[0].split("/") if p]
    return StreamKey(parts[0], parts[1]) if len(parts) >= 2 else None


async def _relay(
    client: socket.socket,
    received: bytes,
    owner: tuple[str, int],
    *,
    still_owner: Callable[[], bool] = lambda: True,
) -> None:
    """Pass a publisher to the worker that owns its stream (see RtmpFront).

    Checked every RELAY_RECHECK seconds: once `still_owner()` is false the
    relay ends, both ways, so the publisher reconnects to the new owner.
    """
    reader, writer = await asyncio.open_connection(*owner)
    try:
        c1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)
        writer.write(b"\x03" + c1)
        s0s1s2 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        writer.write(s0s1s2[1 : 1 + HANDSHAKE_SIZE] + received)  # C2 echoes S1
        await writer.drain()
        client_reader, client_writer = await asyncio.open_connection(sock=client)
        copies = asyncio.gather(_copy(client_reader, writer), _copy(reader, client_writer))
        while not copies.done():
            try:
                await asyncio.wait_for(asyncio.shield(copies), timeout=RELAY_RECHECK)
            except TimeoutError:
                if not still_owner():
                    log.info("rtmp: the ring moved the stream off %s: relay dropped", owner[0])
                    client_writer.close()
                    writer.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await copies
    finally:
        writer.close()


async def _copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        target.close()


async def _handshake_and_connect(client: socket.socket) -> tuple[str, bytes]:
    """Do the plain RTMP handshake and read up to the client's connect command.

    Returns the connect's app and every byte received after C2.
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray()

    async def fill(size: int) -> None:
        while len(buffer) < size:
            chunk = await loop.sock_recv(client, 65536)
            if not chunk:
                raise ValueError("closed during the handshake")
            buffer.extend(chunk)

    await fill(1)
    if buffer[0] != 3:  # not RTMP (an HTTP request, a scanner): hang up at once
        raise ValueError(f"bad handshake version {buffer[0]}")
    await fill(1 + HANDSHAKE_SIZE)
    c1 = bytes(buffer[1 : 1 + HANDSHAKE_SIZE])
    await loop.sock_sendall(client, b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8) + c1)
    await fill(1 + 2 * HANDSHAKE_SIZE)
    received = bytearray(buffer[1 + 2 * HANDSHAKE_SIZE :])
    decoder = rtmp_chunks.ChunkDecoder()
    messages = decoder.feed(bytes(received))
    while True:
        for message in messages:
            if message.type_id == 20:  # AMF0 command
                values = amf0.decode_all(message.payload)
                if values and values[0] == "connect" and len(values) > 2:
                    command = values[2]
                    app = command.get("app", "") if isinstance(command, dict) else ""
                    return str(app), bytes(received)
                raise ValueError("the first command is not connect")
        if len(received) > MAX_CONNECT_BYTES:
            raise ValueError("no connect command")
        chunk = await loop.sock_recv(client, 65536)
        if not chunk:
            raise ValueError("closed before connect")
        received.extend(chunk)
        messages = decoder.feed(chunk)
