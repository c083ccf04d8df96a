"""One pushed camera at the edge, from its TCP connect to its close.

Who calls this: the edge's RTMP listener (server.py) runs one `Session` per
accepted connection. The session answers the camera as an RTMP server does
(connect, createStream, publish) and, for the publish, opens a publish of
its own to the stream's owner (upstream.py): the owner checks the key (the
worker's stream-key check, unchanged), and its answer is the camera's.
Checks take turns per source address with a pause after a refusal (the
worker's key gate, servers/rtmp/keygate.py), so guessing keys through the
edge is as slow as against a worker.

    greeting ──connect──▶ commands ──publish──▶ key check (the owner answers)
        │ handshake_timeout, pre-publish caps (limits.py)        │ refused: closed
        ▼                                                        ▼ Publish.Start
     refused (timeout / protocol / too_large)               relaying ──camera leaves──▶ closed

While relaying, the camera's chunks are decoded into messages and each
read's messages are written to every owner the ring names for the stream
(owners.py), one chunk per message, in one write per owner and read. Every
session reads into one buffer of the edge and decodes it before it yields.
Aggregate messages (type 22) are forwarded whole; their FLV tags are looked
into for keyframes, sequence headers and metadata. The session keeps the stream's metadata
and codec sequence headers (a few hundred bytes); a worker it (re)connects
to gets those first and then media from the next keyframe. So:

- the owner's connection breaks (restart, crash): the camera stays
  connected; the session reconnects, to whichever worker the ring names,
  every OWNER_RETRY seconds;
- a handoff is in flight: the target is fed beside the source until the ring
  serves the stream from the target; then the source is dropped;
- no owner takes the stream for ORPHAN_TIMEOUT seconds: the camera is
  closed, so that it reconnects and is asked for its key again.

Nothing is buffered for an owner that is away: media is dropped until the
next keyframe (bounded by upstream.MAX_BUFFER per owner for one that does
not read). A message flood is refused as the worker refuses it (limits.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from camstream.handoff import RingDoc
from camstream.spec import StreamKey
from camstream_worker.edge import owners as owners_
from camstream_worker.edge import upstream as upstream_
from camstream_worker.edge.metrics import EdgeMetrics
from camstream_worker.protocols.rtmp import chunks, flv, forwarded, messages, paths
from camstream_worker.protocols.rtmp.names import redact_app, redact_name
from camstream_worker.servers.rtmp import front
from camstream_worker.servers.rtmp.connection import SERVER_CHUNK_SIZE, WINDOW_ACK_SIZE
from camstream_worker.servers.rtmp.keygate import KeyGate
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.rtmp.refusals import Refusals

__all__ = ["ORPHAN_TIMEOUT", "OWNER_RETRY", "READ_SIZE", "Session", "SessionHost"]

log = logging.getLogger(__name__)

OWNER_RETRY = 0.25  # seconds between tries to (re)connect to an owner that is not there
REFUSED_RETRY = 0.5  # after an owner refused the publish (a target not running it yet)
ORPHAN_TIMEOUT = 30.0  # no owner live for this long: the camera is closed
READ_SIZE = 256 * 1024  # one read takes what the kernel holds, up to this
_WAIT_READ_SIZE = 64 * 1024  # a read after waiting for the socket (a camera between frames)
MAX_CACHED = 64 * 1024  # metadata or a sequence header larger than this is not kept
_UNPUBLISH = ("FCUnpublish", "deleteStream", "closeStream")
_METADATA = ("@setDataFrame", "onMetaData")
_CONFIGS = (flv.TagRole.VIDEO_CONFIG, flv.TagRole.AUDIO_CONFIG)


class SessionHost(Protocol):
    """What a session uses of the edge (server.py)."""

    limits: Limits
    key_gate: KeyGate
    refusals: Refusals
    metrics: EdgeMetrics
    worker_rtmp_port: int
    edge_token: str | None
    read_buffer: bytearray  # READ_SIZE bytes every session reads into, then decodes at once

    def ring(self) -> RingDoc | None: ...

    def tick(self) -> asyncio.Future[None]:
        """Done at the start of the next read batch (shared by all sessions)."""
        ...


class _Refusal(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Unpublished(Exception):
    """The camera said it stops publishing."""


class Session:
    def __init__(
        self,
        host: SessionHost,
        sock: socket.socket,
        peer: str,
        address: str,
        *,
        on_published: Callable[[], None],
    ) -> None:
        self._host = host
        self._sock = sock
        self.peer = peer
        self.address = address
        self._on_published = on_published
        self._loop = asyncio.get_running_loop()
        self._prefix = f"rtmp edge {peer}"
        # The workers count this camera by its own address (forwarded.py).
        self._vouch = forwarded.connect_props(host.edge_token, peer.rpartition(":")[0].strip("[]"))
        self._decoder = chunks.ChunkDecoder(
            max_message_size=host.limits.pre_publish_max_message,
            max_pending_bytes=host.limits.pre_publish_max_pending,
        )
        self._out_chunk_size = chunks.DEFAULT_CHUNK_SIZE
        self._app = ""
        self._stream_name = ""
        self._stream_id = 1
        self._key: StreamKey | None = None
        self._early: list[chunks.RtmpMessage] = []  # read after the publish, not yet sent
        self._upstreams: dict[str, upstream_.Upstream] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._doc_seen: RingDoc | None = None
        self._wanted: tuple[str, ...] = ()
        self._metadata: tuple[int, bytes] | None = None  # (message type, payload)
        self._configs: dict[int, bytes] = {}  # TagRole → the tag body
        self._timestamp = 0
        self._orphan_since: float | None = None
        self._bytes_in = 0
        self._last_ack = 0
        self._ack_window = WINDOW_ACK_SIZE
        limits = host.limits
        self._tokens = limits.message_burst
        self._tokens_at = time.monotonic()
        self.publishing = False
        self.closing = False  # the edge drains: end at the next read

    # -- the whole life

    async def run(self) -> None:
        host = self._host
        limits = host.limits
        try:
            try:
                async with asyncio.timeout(limits.handshake_timeout):
                    app, received, _ = await front.handshake_and_connect(self._sock, limits)
                    await self._until_publish(app, received)
                    await self._check_key()
            except TimeoutError:
                raise _Refusal(
                    "timeout",
                    f"closed before publishing: not publishing within "
                    f"{limits.handshake_timeout:g} s",
                ) from None
            self.publishing = True
            self._on_published()
            await self._relay()
        except _Refusal as exc:
            host.refusals.refuse(exc.reason, self._prefix, exc.detail)
        except chunks.ChunkTooLarge as exc:
            host.refusals.refuse("too_large", self._prefix, f"closed: {exc}")
        except _Unpublished:
            log.info("%s: unpublished", self._prefix)
        except (OSError, ValueError, AssertionError) as exc:
            if self.publishing:
                log.info("%s: camera gone (%s)", self._prefix, type(exc).__name__)
            else:
                host.refusals.refuse(
                    "protocol", self._prefix, f"closed before publishing: {type(exc).__name__}"
                )
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for task in self._connecting.values():
            task.cancel()
        for up in self._upstreams.values():
            up.close()
        self._upstreams.clear()
        self._sock.close()

    # -- before the publish

    async def _send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self._sock, data)

    async def _until_publish(self, app: str, received: bytes) -> None:
        limits = self._host.limits
        total = len(received)
        count = 0
        pending = self._decoder.feed(received)
        while True:
            while pending:
                message = pending.pop(0)
                count += 1
                if count > limits.pre_publish_max_messages:
                    raise _Refusal("too_large", "closed: too many messages before publishing")
                if await self._command(message):
                    self._early = pending
                    return
            data = await self._loop.sock_recv(self._sock, 65536)
            if not data:
                raise ConnectionResetError("closed before publishing")
            total += len(data)
            if total > limits.pre_publish_max_bytes:
                raise _Refusal(
                    "too_large",
                    f"closed: over {limits.pre_publish_max_bytes} bytes before publishing",
                )
            pending = self._decoder.feed(data)

    async def _command(self, message: chunks.RtmpMessage) -> bool:
        """Answer one message before the publish; True once it was the publish."""
        if message.type_id not in (messages.AMF0_COMMAND, messages.AMF3_COMMAND):
            if message.type_id == messages.WINDOW_ACK_SIZE:
                self._ack_window = max(messages.window_ack_size(message.payload) or 0, 4096)
            return False
        values = messages.command_values(message)
        name = values[0] if values and isinstance(values[0], str) else ""
        txid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            props = values[2] if len(values) > 2 else None
            app = props.get("app") if isinstance(props, dict) else None
            if not isinstance(app, str) or self._app:
                raise ValueError("a connect without an app, or a second one")
            self._app = app
            self._prefix = f"rtmp edge {self.peer} {redact_app(app)}"
            await self._send(
                messages.connect_replies(
                    txid,
                    window=WINDOW_ACK_SIZE,
                    chunk_size=self._out_chunk_size,
                    new_chunk_size=SERVER_CHUNK_SIZE,
                )
            )
            self._out_chunk_size = SERVER_CHUNK_SIZE
        elif not self._app:
            raise ValueError("a command before connect")
        elif name == "createStream":
            await self._send(messages.command(0, ["_result", txid, None, 1.0], SERVER_CHUNK_SIZE))
        elif name in ("releaseStream", "FCPublish"):
            if txid:
                await self._send(
                    messages.command(0, ["_result", txid, None, None], SERVER_CHUNK_SIZE)
                )
        elif name == "publish":
            stream = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
            self._stream_name = stream
            self._stream_id = message.stream_id or 1
            self._prefix = f"rtmp edge {self.peer} {redact_app(self._app)}/{redact_name(stream)}"
            return True
        elif name == "play":
            raise ValueError("play requested; the edge only takes publishers")
        return False

    async def _status(self, level: str, code: str, description: str) -> None:
        await self._send(
            messages.on_status(self._stream_id, level, code, description, self._out_chunk_size)
        )

    async def _check_key(self) -> None:
        """The stream's owner checks the key; its answer is the camera's."""
        target = paths.publish_target(self._app, self._stream_name)
        if target is None:
            await self._status("error", "NetStream.Publish.BadName", "Publish rejected.")
            raise _Refusal("unauthorized", "publish rejected (names no stream)")
        self._key = target[0]
        async with self._host.key_gate.turn(self.address) as turn:
            try:
                first = await self._first_owner(target[0])
            except upstream_.Refused:
                turn.failed()  # the address's next key check waits (keygate.py)
                await self._status("error", "NetStream.Publish.BadName", "Publish rejected.")
                raise _Refusal(
                    "unauthorized", "publish rejected (unknown stream or wrong key)"
                ) from None
        self._adopt(first, fork=False)
        begin = messages.user_control(
            messages.STREAM_BEGIN, messages.u32(self._stream_id), self._out_chunk_size
        )
        await self._send(begin)
        await self._status("status", "NetStream.Publish.Start", "Start publishing.")
        log.info("%s: publishing through the edge to %s", self._prefix, first.worker)
        limits = self._host.limits
        self._decoder.set_limits(
            max_message_size=limits.max_message_size, max_pending_bytes=limits.max_pending
        )

    async def _first_owner(self, key: StreamKey) -> upstream_.Upstream:
        """The serving owner's publish; waits (within the handshake's time) for one to be up."""
        while True:
            doc = self._host.ring()
            names = owners_.owners(doc, key)
            where = owners_.address(doc, names[0], self._host.worker_rtmp_port) if names else None
            if where is not None:
                up = upstream_.Upstream(names[0], where, vouch=self._vouch)
                try:
                    await up.open(self._app, self._stream_name)
                    return up
                except (OSError, TimeoutError) as exc:
                    # The owner has just died; the ring is about to name another.
                    log.debug("%s: owner %s not there (%s)", self._prefix, names[0], exc)
            await asyncio.sleep(OWNER_RETRY)

    # -- relaying

    async def _relay(self) -> None:
        host = self._host
        limits = host.limits
        early, self._early = self._early, []
        for message in early:
            self._message(message)
        self._flush()
        shared = host.read_buffer
        while not self.closing:
            self._follow_ring()
            data: bytes | memoryview
            count = self._read_now(shared)
            if count is None:
                # Nothing waiting (a camera between frames, or a silent one):
                # wait for the socket, at most the idle timeout, into bytes of
                # its own (other sessions fill the shared buffer meanwhile).
                async with asyncio.timeout(limits.idle_timeout):
                    data = await self._loop.sock_recv(self._sock, _WAIT_READ_SIZE)
                count = len(data)
            else:
                data = memoryview(shared)[:count]
            if not count:
                return
            # Decoded before anything awaits: the decoder copies what it keeps,
            # and the shared buffer is the next session's once this one yields.
            batch = self._decoder.feed(data)
            del data
            self._bytes_in += count
            host.metrics.bytes_in.inc(count)
            self._spend(len(batch))
            for message in batch:
                self._message(message)
            self._flush()
            if self._bytes_in - self._last_ack >= self._ack_window:
                self._last_ack = self._bytes_in
                await self._send(
                    messages.control(
                        messages.ACK, messages.u32(self._bytes_in), self._out_chunk_size
                    )
                )
            if count == len(shared):
                continue  # the kernel may hold more: a fast camera is read at its pace
            if limits.read_batch_seconds > 0:
                # One timer for every camera of the edge (server.py), not one each.
                await asyncio.shield(host.tick())

    def _read_now(self, into: bytearray) -> int | None:
        """Read what the kernel holds for this camera now into `into`, without
        waiting: the byte count (0: the camera closed); None: nothing yet.

        A live camera always has data after a batch's pause, so reading the
        socket directly saves registering it with the event loop per read.
        Reading into one buffer for every camera saves allocating READ_SIZE
        bytes per read and keeping each camera's last read between batches
        (3.8 against 2.8 us per read of 13 KB, bench/edge_read_bench.py).
        """
        try:
            return self._sock.recv_into(into)
        except (BlockingIOError, InterruptedError):
            return None

    def _spend(self, count: int) -> None:
        limits = self._host.limits
        now = time.monotonic()
        self._tokens = min(
            limits.message_burst,
            self._tokens + (now - self._tokens_at) * limits.messages_per_second,
        )
        self._tokens_at = now
        self._tokens -= count
        if self._tokens < 0:
            raise _Refusal(
                "flood", f"closed: over {limits.messages_per_second:g} messages a second"
            )

    def _message(self, message: chunks.RtmpMessage) -> None:
        kind = message.type_id
        if kind == messages.VIDEO or kind == messages.AUDIO:
            self._timestamp = message.timestamp
            payload = message.payload
            role = flv.tag_role(kind, payload)
            if role in _CONFIGS and len(payload) <= MAX_CACHED:
                self._configs[role] = payload
            self._forward(message, role)
        elif kind in (messages.AMF0_DATA, messages.AMF3_DATA):
            values = messages.data_values(message)
            if values and values[0] in _METADATA and len(message.payload) <= MAX_CACHED:
                self._metadata = (kind, message.payload)
            self._forward(message, flv.TagRole.OTHER)
        elif kind == messages.AGGREGATE:
            self._timestamp = message.timestamp
            self._forward(message, self._aggregate(message))
        elif kind in (messages.AMF0_COMMAND, messages.AMF3_COMMAND):
            values = messages.command_values(message)
            if values and values[0] in _UNPUBLISH:
                raise _Unpublished()
        elif kind == messages.WINDOW_ACK_SIZE:
            self._ack_window = max(messages.window_ack_size(message.payload) or 0, 4096)

    def _aggregate(self, message: chunks.RtmpMessage) -> int:
        """An aggregate message's role: KEYFRAME if one of its FLV tags is a video
        keyframe, else a sequence header's role if it holds one (an owner waiting
        for a keyframe takes those too), else OTHER; its sequence headers and
        metadata are kept as a plain message's are. It is forwarded whole (the
        worker unpacks it), so an owner started at it may get the tags before
        its keyframe too; the worker's RTMP source drops video until its first
        keyframe (sources/rtmp.py), as for any camera's start.
        One that does not hold whole FLV tags closes the camera, as the worker would.
        """
        role = flv.TagRole.OTHER
        try:
            for kind, timestamp, body in messages.aggregate_tags(
                message.timestamp, message.payload
            ):
                if kind == messages.VIDEO or kind == messages.AUDIO:
                    inner = flv.tag_role(kind, body)
                    if inner == flv.TagRole.KEYFRAME:
                        role = inner
                    elif inner in _CONFIGS:
                        if role == flv.TagRole.OTHER:
                            role = inner
                        if len(body) <= MAX_CACHED:
                            self._configs[inner] = body
                elif kind == messages.AMF0_DATA and len(body) <= MAX_CACHED:
                    data = chunks.RtmpMessage(message.csid, kind, 0, timestamp, body)
                    values = messages.data_values(data)
                    if values and values[0] in _METADATA:
                        self._metadata = (kind, body)
        except messages.AggregateError as exc:
            raise _Refusal("protocol", f"closed: {exc}") from None
        return role

    def _forward(self, message: chunks.RtmpMessage, role: int) -> None:
        """Queue the message for every owner that takes it now (a new owner: from a keyframe)."""
        for up in self._upstreams.values():
            if up.need_keyframe:
                if role == flv.TagRole.KEYFRAME:
                    up.need_keyframe = False
                elif role not in _CONFIGS:
                    up.skipped += 1
                    continue
            up.queue(message.type_id, message.timestamp, message.payload)

    def _flush(self) -> None:
        """Each owner gets this read's messages in one write."""
        metrics = self._host.metrics
        for name, up in self._upstreams.items():
            written = up.flush()
            if written:
                metrics.bytes_out.inc(written)
            elif written is None and not up.lost.is_set() and not up.need_keyframe:
                up.need_keyframe = True
                metrics.overflows.inc()
                log.warning(
                    "%s: %s reads too slowly (over %d bytes queued): skipping to the next keyframe",
                    self._prefix,
                    name,
                    upstream_.MAX_BUFFER,
                )

    def _follow_ring(self) -> None:
        """Feed the owners the ring names now: drop the others, (re)connect the missing."""
        assert self._key is not None
        doc = self._host.ring()
        if doc is not self._doc_seen:  # the owners change only with the ring document
            self._doc_seen = doc
            self._wanted = owners_.owners(doc, self._key)
        wanted = self._wanted
        now = time.monotonic()
        metrics = self._host.metrics
        for name, up in list(self._upstreams.items()):
            if up.lost.is_set():
                del self._upstreams[name]
                metrics.owner_lost.inc()
                log.info("%s: lost %s; holding the camera", self._prefix, name)
                self._retry_at[name] = now + OWNER_RETRY
            elif name not in wanted:
                del self._upstreams[name]
                up.close()
                log.info("%s: %s no longer serves the stream: dropped", self._prefix, name)
        for name in wanted:
            if (
                name in self._upstreams
                or name in self._connecting
                or now < self._retry_at.get(name, 0.0)
            ):
                continue
            where = owners_.address(doc, name, self._host.worker_rtmp_port)
            if where is None:
                continue
            fork = bool(self._upstreams) or name != wanted[0]
            task = asyncio.create_task(self._connect(name, where, fork=fork))
            self._connecting[name] = task
        if self._upstreams:
            self._orphan_since = None
        elif self._orphan_since is None:
            self._orphan_since = now
        elif now - self._orphan_since > ORPHAN_TIMEOUT:
            raise _Refusal(
                "capacity", f"closed: no worker took the stream for {ORPHAN_TIMEOUT:g} s"
            )

    async def _connect(self, name: str, where: tuple[str, int], *, fork: bool) -> None:
        up = upstream_.Upstream(name, where, vouch=self._vouch)
        try:
            await up.open(self._app, self._stream_name)
        except upstream_.Refused as exc:
            log.info("%s: %s refused the stream (%s); retrying", self._prefix, name, exc.code)
            self._retry_at[name] = time.monotonic() + REFUSED_RETRY
            return
        except (OSError, TimeoutError) as exc:
            log.debug("%s: %s not reachable (%s)", self._prefix, name, type(exc).__name__)
            self._retry_at[name] = time.monotonic() + OWNER_RETRY
            return
        finally:
            self._connecting.pop(name, None)
        if self._sock.fileno() < 0:  # the camera left meanwhile
            up.close()
            return
        self._adopt(up, fork=fork)
        self._host.metrics.owner_connects.inc()
        log.info(
            "%s: %s %s",
            self._prefix,
            "forked to the handoff's target" if fork else "reconnected to",
            name,
        )

    def _adopt(self, up: upstream_.Upstream, *, fork: bool) -> None:
        """Start feeding `up`: metadata and sequence headers now, media from the next keyframe."""
        if fork:
            self._host.metrics.handoffs_forked.inc()
        self._upstreams[up.worker] = up
        up.need_keyframe = True
        headers = []
        if self._metadata is not None:
            headers.append(up.frame(self._metadata[0], self._timestamp, self._metadata[1]))
        for role, kind in (
            (flv.TagRole.VIDEO_CONFIG, messages.VIDEO),
            (flv.TagRole.AUDIO_CONFIG, messages.AUDIO),
        ):
            body = self._configs.get(role)
            if body is not None:
                headers.append(up.frame(kind, self._timestamp, body))
        if headers:
            up.write(b"".join(headers))
