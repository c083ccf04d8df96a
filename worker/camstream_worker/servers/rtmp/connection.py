"""One RTMP connection: the protocol state machine from handshake to unpublish.

``RtmpServer`` (``listener.py``) makes one ``RtmpConnection`` per TCP
connection it accepts or adopts, and is its ``Host``: the small interface
below is all a connection may use of the listener (its limits, its counters,
the registry of who publishes what, the shared read-batch timer and the
``Authorizer``). The connection asks the authorizer about each ``publish``
and feeds the accepted stream to the ``PublishSink`` it answers with. The
bytes (handshake, chunks, messages, AMF0, FLV) are protocols/rtmp's.

Connection life:

    handshake (C0+C1 → S0+S1+S2, ← C2; plain, no crypto)
      → session: connect → createStream → publish
      → authorizing (socket reads paused until the authorizer answers)
      → publishing (media flows to the sink) → unpublish / EOF / error → closed

Policies, chosen here and relied on by the stream behind the sink:
- A second publish for a stream already being published (same app and stream
  name, query stripped) *replaces* the old publisher: the newcomer has just
  proven the key, and a camera that reconnects after a network cut must not
  wait for its old, half-dead TCP connection to time out. The old sink gets
  ``on_close("replaced by a new publisher")`` before the new one receives
  anything; the authorizer is asked about the newcomer while the old one is
  still live.
- A connection must be publishing within ``handshake_timeout`` seconds of
  connecting (slowloris, port scanners, half handshakes), and a publisher
  that sends nothing for ``idle_timeout`` seconds is dropped.
- Every failure closes only its own connection with one log line naming the
  peer and the redacted stream, and is counted in ``stats()``. Stream keys
  never reach a log line: names are shown through ``redact_name``.
- Sinks are called synchronously on the event loop: they must not block.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from camstream_worker.protocols.rtmp import amf0, chunks, handshake, messages
from camstream_worker.protocols.rtmp.flv import FlvError, FlvTagParser, MediaPacket
from camstream_worker.protocols.rtmp.names import (
    printable,
    redact_app,
    redact_name,
    stream_identity,
)
from camstream_worker.protocols.rtmp.publish import PublishSink

__all__ = ["Authorizer", "Counters", "Host", "Limits", "PublishSink", "RtmpConnection"]

log = logging.getLogger(__name__)

WINDOW_ACK_SIZE = 2_500_000
SERVER_CHUNK_SIZE = 4096
MAX_STREAMS_PER_CONNECTION = 8
MAX_COMMAND_SIZE = 64 * 1024  # real commands are a few hundred bytes; decoding is not free


class Authorizer(Protocol):
    """Decides whether a publish is allowed and where it goes."""

    def __call__(
        self, app: str, stream_name: str, peer: str
    ) -> PublishSink | Awaitable[PublishSink | None] | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """What a listener allows each connection."""

    read_batch_seconds: float = 0.03  # pause a publisher's reads this long (0: never)
    max_connections: int = 10000
    handshake_timeout: float = 10.0  # to be publishing, from connecting
    idle_timeout: float = 30.0  # without a byte from a publisher


@dataclass(slots=True)
class Counters:
    """Totals since the listener started; its connections count into them."""

    connections_total: int = 0
    publishes_total: int = 0
    rejected: int = 0
    protocol_errors: int = 0
    timeouts: int = 0
    reads: int = 0
    bytes_in: int = 0


class Host(Protocol):
    """What a connection may use of the listener that made it."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    counters: Counters
    authorize: Authorizer

    def admit(self, connection: RtmpConnection) -> bool:
        """Count a new connection in; False when it must be refused (too many open)."""
        ...

    def forget(self, connection: RtmpConnection) -> None:
        """The connection is closed."""
        ...

    def claim(self, identity: tuple[str, str], connection: RtmpConnection) -> RtmpConnection | None:
        """Record `connection` as the publisher of `identity`; return the one it replaces."""
        ...

    def release(self, identity: tuple[str, str], connection: RtmpConnection) -> None:
        """`connection` no longer publishes `identity` (if it still was the publisher)."""
        ...

    def resume_later(self, connection: RtmpConnection) -> None:
        """Call `connection.resume_batch()` after about one read batch."""
        ...


class _RtmpProtocolError(ValueError):
    """The peer did something RTMP does not allow."""


class RtmpConnection(asyncio.Protocol):
    """One TCP connection: handshake, chunk stream, commands, media."""

    def __init__(self, host: Host, *, handshake_done: bool = False) -> None:
        """`handshake_done`: another process did the handshake (see RtmpServer.adopt)."""
        self._host = host
        self._loop = host.loop
        self._transport: asyncio.Transport | None = None
        self.peer = "?"
        self._prefix = "rtmp ?"
        self._handshake = None if handshake_done else handshake.ServerHandshake()
        self._decoder = chunks.ChunkDecoder()
        self._pending: deque[chunks.RtmpMessage] = deque()
        self._closed = False
        self._started = self._loop.time()
        self._last_data = self._started
        self._bytes_in = 0
        self._last_ack = 0
        self._ack_window = WINDOW_ACK_SIZE
        self._out_chunk_size = chunks.DEFAULT_CHUNK_SIZE
        self._app: str | None = None
        self._next_stream_id = 1
        self._auth_task: asyncio.Task[None] | None = None
        self._batch_paused = False
        self._sink: PublishSink | None = None
        self._identity: tuple[str, str] | None = None
        self._parser: FlvTagParser | None = None
        self._published = False  # a publish was accepted on this connection (ever)
        self._audio_drop_logged = False

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._prefix = f"rtmp {self.peer}"
        if not self._host.admit(self):
            self._closed = True
            transport.abort()

    def data_received(self, data: bytes) -> None:
        counters = self._host.counters
        counters.reads += 1
        counters.bytes_in += len(data)
        self._bytes_in += len(data)
        self._last_data = self._loop.time()
        if self._closed:
            return
        if self._handshake is not None:
            self._guard(self._shake, data)
            return
        self._guard(self._feed, data)
        if self._sink is not None and not self._closed:
            self._pause_for_batch()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            self._host.forget(self)
            return
        if exc is None:
            log.info("%s: disconnected", self._prefix)
            self.close(None)
        else:
            log.info("%s: connection lost: %s", self._prefix, exc.__class__.__name__)
            self.close(f"connection lost ({exc.__class__.__name__})")

    # -- failure handling: nothing a peer does may escape this connection

    def _guard(self, step: Callable[..., None], *args: object) -> None:
        try:
            step(*args)
        except (
            handshake.HandshakeError,
            chunks.ChunkError,
            amf0.Amf0Error,
            messages.AggregateError,
            _RtmpProtocolError,
        ) as exc:
            self._host.counters.protocol_errors += 1
            self.fail(f"protocol error: {exc}")
        except FlvError as exc:
            self.fail(str(exc))
        except Exception:
            log.exception("%s: internal error", self._prefix)
            self.fail("internal error")

    def fail(self, reason: str) -> None:
        """Close with one log line saying why (a peer's fault, a timeout, a replacement)."""
        if self._closed:
            return
        log.warning("%s: closed: %s", self._prefix, reason)
        self.close(reason)

    def close(self, reason: str | None) -> None:
        """Close the connection; end the publish with ``reason`` if there is one."""
        if self._closed:
            return
        self._closed = True
        self._host.forget(self)
        self._pending.clear()
        if self._auth_task is not None:
            self._auth_task.cancel()
            self._auth_task = None
        self._end_publish(reason)
        if self._transport is not None:
            self._transport.close()  # flushes what is queued (e.g. a rejection) first

    def check_deadlines(self, now: float) -> None:
        """Called by the listener's housekeeping every fraction of a second."""
        limits = self._host.limits
        if self._sink is None and not self._published:
            if now - self._started > limits.handshake_timeout:
                self._host.counters.timeouts += 1
                self.fail(f"not publishing within {limits.handshake_timeout:g} s of connecting")
        elif now - self._last_data > limits.idle_timeout:
            self._host.counters.timeouts += 1
            self.fail(f"no data for {limits.idle_timeout:g} s")

    # -- read batching

    def _pause_for_batch(self) -> None:
        if self._host.limits.read_batch_seconds <= 0 or self._batch_paused:
            return
        if self._transport is None:
            return
        self._batch_paused = True
        self._transport.pause_reading()
        self._host.resume_later(self)

    def resume_batch(self) -> None:
        self._batch_paused = False
        if not self._closed and self._auth_task is None and self._transport is not None:
            self._transport.resume_reading()

    # -- handshake

    def _shake(self, data: bytes) -> None:
        shake = self._handshake
        assert shake is not None
        reply = shake.feed(data)
        if reply:
            self._write(reply)
        if shake.done:
            self._handshake = None
            log.debug("%s: handshake done", self._prefix)
            if shake.rest:
                self._feed(shake.rest)

    # -- chunk stream and messages

    def _feed(self, data: bytes) -> None:
        self._pending.extend(self._decoder.feed(data))
        self._drain()
        # After the messages: one of them may have been the peer's Window Ack Size.
        if self._bytes_in - self._last_ack >= self._ack_window and not self._closed:
            self._last_ack = self._bytes_in
            self._write(
                messages.control(messages.ACK, messages.u32(self._bytes_in), self._out_chunk_size)
            )

    def _drain(self) -> None:
        pending = self._pending
        while pending and self._auth_task is None and not self._closed:
            self._handle(pending.popleft())

    def _handle(self, msg: chunks.RtmpMessage) -> None:
        kind = msg.type_id
        if kind == messages.AUDIO or kind == messages.VIDEO:
            self._media(kind, msg.timestamp, msg.payload)
        elif kind == messages.AMF0_COMMAND or kind == messages.AMF3_COMMAND:
            if len(msg.payload) > MAX_COMMAND_SIZE:
                raise _RtmpProtocolError(f"command of {len(msg.payload)} bytes")
            self._command(msg.stream_id, messages.command_values(msg))
        elif kind == messages.AMF0_DATA or kind == messages.AMF3_DATA:
            self._data(msg)
        elif kind == messages.AGGREGATE:
            for tag_type, timestamp, body in messages.aggregate_tags(msg.timestamp, msg.payload):
                if tag_type in (messages.AUDIO, messages.VIDEO):
                    self._media(tag_type, timestamp, body)
                elif tag_type == messages.AMF0_DATA:
                    self._data(
                        chunks.RtmpMessage(msg.csid, tag_type, msg.stream_id, timestamp, body)
                    )
        elif kind == messages.USER_CONTROL:
            ping = messages.ping_request(msg.payload)
            if ping is not None:
                self._write(
                    messages.user_control(messages.PING_RESPONSE, ping, self._out_chunk_size)
                )
        elif kind == messages.WINDOW_ACK_SIZE:
            window = messages.window_ack_size(msg.payload)
            if window is not None:
                self._ack_window = max(window, 4096)
        # Set Chunk Size / Abort were applied by the decoder; Ack and Set Peer
        # Bandwidth need nothing from a server that only receives.

    def _media(self, kind: int, timestamp: int, body: bytes) -> None:
        sink, parser = self._sink, self._parser
        if sink is None or parser is None:
            return  # media before publish is accepted (or after unpublish): drop it
        item = parser.parse(kind, timestamp, body)
        if item is None:
            if parser.dropped_audio is not None and not self._audio_drop_logged:
                self._audio_drop_logged = True
                log.warning(
                    "%s: ignoring the audio (%s); video continues",
                    self._prefix,
                    parser.dropped_audio,
                )
            return
        if isinstance(item, MediaPacket):
            sink.on_packet(item)
        else:
            log.info(
                "%s: %s track: %s%s",
                self._prefix,
                item.kind,
                item.codec,
                f" {item.sample_rate} Hz" if item.sample_rate else "",
            )
            sink.on_config(item)

    def _data(self, msg: chunks.RtmpMessage) -> None:
        if self._sink is None:
            return
        try:
            values = messages.data_values(msg)
        except amf0.Amf0Error as exc:
            log.debug("%s: unreadable data message ignored: %s", self._prefix, exc)
            return
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            self._sink.on_metadata(dict(values[1]))

    # -- commands

    def _command(self, stream_id: int, values: list[object]) -> None:
        if not values or not isinstance(values[0], str):
            raise _RtmpProtocolError("command without a name")
        name = values[0]
        txid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            self._on_connect(txid, values[2] if len(values) > 2 else None)
        elif self._app is None:
            raise _RtmpProtocolError(f"{printable(name, 32)!r} before connect")
        elif name == "createStream":
            if self._next_stream_id > MAX_STREAMS_PER_CONNECTION:
                raise _RtmpProtocolError("too many createStream calls")
            self._send_command(0, ["_result", txid, None, float(self._next_stream_id)])
            self._next_stream_id += 1
        elif name == "publish":
            stream = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
            self._on_publish(stream_id, stream)
        elif name in ("releaseStream", "FCPublish"):
            if txid:
                self._send_command(0, ["_result", txid, None, None])
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self._sink is not None:
                log.info("%s: unpublished", self._prefix)
                self._end_publish(None)
        elif name == "play":
            self._send_status(
                stream_id, "error", "NetStream.Play.Failed", "Playback is not offered here."
            )
            raise _RtmpProtocolError("play requested; this server only takes publishers")
        else:
            log.debug("%s: command %r ignored", self._prefix, printable(name, 32))

    def _on_connect(self, txid: float, props: object) -> None:
        if self._app is not None:
            raise _RtmpProtocolError("second connect on one connection")
        app = props.get("app") if isinstance(props, dict) else None
        if not isinstance(app, str):
            raise _RtmpProtocolError("connect without an app name")
        self._app = app
        self._prefix = f"rtmp {self.peer} {redact_app(app)}"
        size = self._out_chunk_size
        window = messages.u32(WINDOW_ACK_SIZE)
        self._write(messages.control(messages.WINDOW_ACK_SIZE, window, size))
        self._write(
            messages.control(messages.SET_PEER_BANDWIDTH, window + b"\x02", size)
        )  # dynamic
        self._write(
            messages.control(messages.SET_CHUNK_SIZE, messages.u32(SERVER_CHUNK_SIZE), size)
        )
        self._out_chunk_size = SERVER_CHUNK_SIZE
        self._send_command(
            0,
            [
                "_result",
                txid,
                {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": 0.0,
                },
            ],
        )

    def _on_publish(self, stream_id: int, stream_name: str) -> None:
        if self._sink is not None or self._auth_task is not None or self._published:
            raise _RtmpProtocolError("second publish on one connection")
        app = self._app or ""
        self._prefix = f"rtmp {self.peer} {redact_app(app)}/{redact_name(stream_name)}"
        if self._transport is not None:
            self._transport.pause_reading()  # nothing more is read until the answer
        self._auth_task = self._loop.create_task(self._authorize(app, stream_name, stream_id))

    async def _authorize(self, app: str, stream_name: str, stream_id: int) -> None:
        sink: PublishSink | None = None
        try:
            answer = self._host.authorize(app, stream_name, self.peer)
            sink = await answer if inspect.isawaitable(answer) else answer
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: authorizer failed", self._prefix)
            sink = None
        if self._closed:  # the peer left while we were asking
            if sink is not None:
                self._safe_close_sink(sink, "publisher left during authorization")
            return
        self._auth_task = None
        if sink is None:
            self._host.counters.rejected += 1
            self._send_status(stream_id, "error", "NetStream.Publish.BadName", "Publish rejected.")
            self.fail("publish rejected (unknown stream or wrong key)")
            return
        self._guard(self._accept, app, stream_name, stream_id, sink)
        if self._closed:
            return
        self._guard(self._drain)
        if not self._closed and not self._batch_paused and self._transport is not None:
            self._transport.resume_reading()

    def _accept(self, app: str, stream_name: str, stream_id: int, sink: PublishSink) -> None:
        identity = stream_identity(app, stream_name)
        old = self._host.claim(identity, self)
        if old is not None and old is not self:
            old.fail(f"replaced by a new publisher from {self.peer}")
        self._host.counters.publishes_total += 1
        self._identity = identity
        self._sink = sink
        self._published = True
        self._parser = FlvTagParser()
        begin = messages.user_control(
            messages.STREAM_BEGIN, messages.u32(stream_id), self._out_chunk_size
        )
        self._write(begin)
        self._send_status(stream_id, "status", "NetStream.Publish.Start", "Start publishing.")
        log.info("%s: publishing", self._prefix)

    def _end_publish(self, reason: str | None) -> None:
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        self._parser = None
        if self._identity is not None:
            self._host.release(self._identity, self)
        self._safe_close_sink(sink, reason)

    def _safe_close_sink(self, sink: PublishSink, reason: str | None) -> None:
        try:
            sink.on_close(reason)
        except Exception:
            log.exception("%s: sink failed to close", self._prefix)

    # -- sending

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _send_command(self, stream_id: int, values: list[object]) -> None:
        self._write(messages.command(stream_id, values, self._out_chunk_size))

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._write(messages.on_status(stream_id, level, code, description, self._out_chunk_size))
