"""One RTMP connection: the protocol state machine from handshake to unpublish.

``RtmpServer`` (``listener.py``) makes one ``RtmpConnection`` per TCP
connection it accepts or adopts, and is its ``Host`` (host.py): that small
interface is all a connection may use of the listener. The connection asks
the authorizer about each ``publish`` and feeds the accepted stream to the
``PublishSink`` it answers with; it writes through its ``Outbox``
(outbox.py, flow control). The bytes (handshake, chunks, messages, AMF0,
FLV) are protocols/rtmp's.

Connection life:

    handshake (C0+C1 → S0+S1+S2, ← C2; plain, no crypto)
      → session: connect → createStream → publish
      → authorizing (reads paused; waits its turn at the key gate, keygate.py)
      → publishing (media flows to the sink) → unpublish / EOF / error → closed

Policies, chosen here and relied on by the stream behind the sink (the
numbers are limits.py's; docs/threat-model-rtmp.md is the overview):
- Until its publish is accepted a client is a stranger: small messages, few
  messages and bytes in all, and ``handshake_timeout`` to be publishing; it
  counts against its address's cap of strangers (admission.py). An accepted
  publish raises the caps to what cameras need.
- Work is bounded per turn of the event loop: at most ``work_budget`` chunks
  are decoded per read before the connection yields (reads stay paused until
  the rest is done), and messages, empty ones included, are limited to
  ``messages_per_second``. Ping requests are answered within a budget.
- Writes are flow-controlled (outbox.py): past the write high-water mark
  optional replies (pings, acknowledgements) are skipped, a client that lets
  more than ``max_write_buffer`` bytes pile up is dropped as a slow reader,
  and a closing connection flushes its last words for ``close_grace``
  seconds at most.
- A second publish for a stream already being published (same app and stream
  name, query stripped) *replaces* the old publisher: the newcomer has just
  proven the key, and a camera that reconnects after a network cut must not
  wait for its old, half-dead TCP connection to time out. The old sink gets
  ``on_close("replaced by a new publisher")`` before the new one receives
  anything; the authorizer is asked about the newcomer while the old one is
  still live.
- A publisher that sends nothing for ``idle_timeout`` seconds is dropped, on
  the host's clock, which leaves out the server's own stalls; and not while
  the kernel holds bytes from it that the server has not read yet.
- Every failure closes only its own connection. A refusal is counted under
  its reason and logged through ``Refusals`` (a flood of them is summarized);
  the end of a publish is logged once. Stream keys never reach a log line:
  names are shown through ``redact_app``/``redact_name``.
- Sinks are called synchronously on the event loop: they must not block.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import inspect
import logging
import os
import termios
from collections import deque
from collections.abc import Callable

from camstream_worker.protocols.rtmp import amf0, chunks, forwarded, handshake, messages
from camstream_worker.protocols.rtmp.flv import FlvError, FlvTagParser, MediaPacket
from camstream_worker.protocols.rtmp.names import (
    printable,
    redact_app,
    redact_name,
    stream_identity,
)
from camstream_worker.protocols.rtmp.publish import PublishSink
from camstream_worker.servers.rtmp.admission import address_key
from camstream_worker.servers.rtmp.clocks import TokenBucket
from camstream_worker.servers.rtmp.host import Authorizer, Counters, Host
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.rtmp.outbox import Outbox

__all__ = ["Authorizer", "Counters", "Host", "Limits", "PublishSink", "RtmpConnection"]

log = logging.getLogger(__name__)

WINDOW_ACK_SIZE = 2_500_000
SERVER_CHUNK_SIZE = 4096
MAX_STREAMS_PER_CONNECTION = 8
MAX_COMMAND_SIZE = 64 * 1024  # real commands are a few hundred bytes; decoding is not free
# At most this much is read per batch: what asyncio's own socket transport reads.
READ_SIZE = 256 * 1024


class _RtmpProtocolError(ValueError):
    """The peer did something RTMP does not allow."""


class _Refused(Exception):
    """A limit was hit: refuse the connection under `reason` (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class RtmpConnection(asyncio.Protocol):
    """One TCP connection: handshake, chunk stream, commands, media."""

    def __init__(self, host: Host, *, handshake_done: bool = False, age: float = 0.0) -> None:
        """`handshake_done`: another process did the handshake (see RtmpServer.adopt),
        `age` seconds ago counted from the client's connect."""
        self._host = host
        self._loop = host.loop
        self._limits = limits = host.limits
        self._transport: asyncio.Transport | None = None
        self._fd: int | None = None  # its socket's, for the batched reads (_read_batch)
        self.peer = "?"
        self.address = "?"  # what per-address caps count by (admission.address_key)
        self.stranger = True  # no publish accepted yet
        self._vouched = False  # an ingest edge vouched for the camera (forwarded.py)
        self._prefix = "rtmp ?"
        self._handshake = None if handshake_done else handshake.ServerHandshake()
        self._decoder = chunks.ChunkDecoder(
            max_message_size=limits.pre_publish_max_message,
            max_pending_bytes=limits.pre_publish_max_pending,
        )
        self._pending: deque[chunks.RtmpMessage] = deque()
        self._closed = False
        now = host.clock()
        self._started = now - age
        self._last_data = now
        self._stalled_seen = host.stalled
        self._messages = TokenBucket(limits.messages_per_second, limits.message_burst, now)
        self._pings = TokenBucket(limits.pings_per_second, limits.ping_burst, now)
        self._bytes_in = 0
        self._last_ack = 0
        self._ack_window = WINDOW_ACK_SIZE
        self._out_chunk_size = chunks.DEFAULT_CHUNK_SIZE
        self._app: str | None = None
        self._next_stream_id = 1
        self._auth_task: asyncio.Task[None] | None = None
        self._batch_paused = False
        self._backlog_due = False  # decoding continues on the next turn of the loop
        self._reading_paused = False
        self._outbox = Outbox(limits, self._slow_reader)
        self._sink: PublishSink | None = None
        self._identity: tuple[str, str] | None = None
        self._parser: FlvTagParser | None = None
        self._published = False  # a publish was accepted on this connection (ever)
        self._audio_drop_logged = False

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else None
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]}:{peer[1]}"
            self.address = address_key(str(peer[0]))
        else:
            self.peer = self.address = str(peer)
        self._prefix = f"rtmp {self.peer}"
        self._outbox.attach(transport)
        refusal = self._host.admit(self)
        if refusal is not None:
            self._closed = True
            self._host.refusals.refuse(refusal, self._prefix, _ADMISSION_REFUSALS[refusal])
            transport.abort()

    def data_received(self, data: bytes) -> None:
        counters = self._host.counters
        counters.reads += 1
        counters.bytes_in += len(data)
        self._bytes_in += len(data)
        self._last_data = self._host.clock()
        if self._closed:
            return
        if self._handshake is not None:
            self._guard(self._shake, data)
        else:
            self._guard(self._take, data)
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

    def pause_writing(self) -> None:
        self._outbox.paused = True  # optional replies are skipped until the client reads

    def resume_writing(self) -> None:
        self._outbox.paused = False

    def _slow_reader(self, detail: str) -> None:
        self.refuse("slow_reader", detail)

    # -- failure handling: nothing a peer does may escape this connection

    def _guard(self, step: Callable[..., None], *args: object) -> None:
        try:
            step(*args)
        except _Refused as exc:
            self.refuse(exc.reason, str(exc))
        except chunks.ChunkTooLarge as exc:
            self.refuse("too_large", f"protocol error: {exc}")
        except (
            handshake.HandshakeError,
            chunks.ChunkError,
            amf0.Amf0Error,
            messages.AggregateError,
            _RtmpProtocolError,
        ) as exc:
            self.refuse("protocol", f"protocol error: {exc}")
        except FlvError as exc:
            self.fail(str(exc))
        except Exception:
            log.exception("%s: internal error", self._prefix)
            self.fail("internal error")

    def refuse(self, reason: str, detail: str) -> None:
        """Close for breaking a rule or a limit: counted under `reason`, logged (summarized)."""
        if self._closed:
            return
        self._host.refusals.refuse(reason, self._prefix, detail)
        self.close(detail)

    def fail(self, reason: str) -> None:
        """Close with one log line saying why (a media problem, a replacement, a bug)."""
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
        self._outbox.close(self._loop)  # a refusal is flushed, for close_grace at most

    def check_deadlines(self, now: float) -> None:
        """Called by the listener's housekeeping every fraction of a second (`now`: its clock)."""
        limits = self._limits
        if self._sink is None and not self._published:
            if now - self._started > limits.handshake_timeout:
                self.refuse(
                    "timeout", f"not publishing within {limits.handshake_timeout:g} s of connecting"
                )
        elif now - self._last_data > limits.idle_timeout:
            if self._unread_bytes():
                # The client did send; the server has not read it yet (busy or
                # paused on purpose). Its silence is ours, not the camera's.
                self._last_data = now
                return
            self.refuse("timeout", f"no data for {limits.idle_timeout:g} s")

    def _unread_bytes(self) -> int:
        """Bytes from the client waiting in the kernel or in the decoder."""
        waiting = self._decoder.buffered if self._backlog_due else 0
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is None:
            return waiting
        count = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        except OSError:
            return waiting
        return waiting + count[0]

    # -- reading: paused while authorizing, between read batches, and while a backlog is decoded
    #
    # A publisher's transport stays paused once its first batch is read: the
    # listener's shared timer (resume_batch) reads its socket itself, once per
    # batch. Resuming the transport for each batch and pausing it again after
    # the read cost two epoll_ctl calls per read, more than the read (bench/
    # README.md, worker profile). What may be read, and when, is unchanged:
    # nothing while authorizing or while a backlog is decoded, one read of at
    # most READ_SIZE bytes per batch.

    def _reads_on_tick(self) -> bool:
        """Whether the listener's timer reads this connection (a batched publisher)."""
        return self._sink is not None and self._limits.read_batch_seconds > 0

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        wanted = not (self._batch_paused or self._backlog_due or self._auth_task is not None)
        if wanted and self._reading_paused:
            if self._reads_on_tick():
                self._pause_for_batch()  # the next tick reads, as resume_batch does
                return
            self._reading_paused = False
            transport.resume_reading()
        elif not wanted and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()

    def _pause_for_batch(self) -> None:
        if self._host.limits.read_batch_seconds <= 0 or self._batch_paused:
            return
        self._batch_paused = True
        self._update_reading()
        self._host.resume_later(self)

    def resume_batch(self) -> None:
        self._batch_paused = False
        if (
            self._reading_paused
            and self._sink is not None  # _reads_on_tick(), inline: this runs per read
            and self._limits.read_batch_seconds > 0
            and not self._backlog_due
            and self._auth_task is None
            and not self._closed
        ):
            self._guard(self._read_batch)
        else:
            self._update_reading()

    def _read_batch(self) -> None:
        """One read of a paused publisher's socket, as the transport's own would be.

        Called under resume_batch's guard, once per publisher and batch: the
        per-read path. It takes the bytes as data_received does, without that
        call and its second guard, and only re-arms the timer after (the
        transport is paused already).
        """
        transport = self._transport
        fd = self._fd
        # The descriptor is the socket's while the transport is not closing
        # (closing it comes after is_closing() turns True), never a reused one.
        if transport is None or fd is None or transport.is_closing():
            return
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            self._pause_for_batch()  # nothing yet: look again at the next tick
            return
        except OSError as exc:
            self.connection_lost(exc)  # logs and ends the publish, as the transport would
            transport.abort()
            return
        if not data:
            self.eof_received()
            transport.close()  # connection_lost(None) follows: "disconnected"
            return
        size = len(data)
        counters = self._host.counters
        counters.reads += 1
        counters.bytes_in += size
        self._bytes_in += size
        self._last_data = self._host.clock()
        self._take(data)
        if self._sink is None:
            self._update_reading()  # the publish ended: the transport reads again
        elif not self._closed and not self._batch_paused:
            # Still publishing: the next tick reads again. The transport stays
            # paused (resume_batch found it so, and _take never resumes it
            # while a sink is set): _pause_for_batch's _update_reading is moot.
            self._batch_paused = True
            self._host.resume_later(self)

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
                self._take(shake.rest)

    # -- chunk stream and messages

    def _take(self, data: bytes) -> None:
        if not self._published and self._bytes_in > self._limits.pre_publish_max_bytes:
            raise _Refused(
                "too_large",
                f"more than {self._limits.pre_publish_max_bytes} bytes before publishing",
            )
        self._decoder.push(data)
        self._decode()

    def _decode(self) -> None:
        """Decode one budget's worth of chunks, handle their messages, and yield if more remain."""
        if self._closed:
            return  # a continuation scheduled before the connection closed
        decoder = self._decoder
        before = decoder.messages
        self._pending.extend(decoder.decode(self._limits.work_budget))
        self._count_messages(decoder.messages - before)
        self._drain()
        # After the messages: one of them may have been the peer's Window Ack Size.
        if self._bytes_in - self._last_ack >= self._ack_window and not self._closed:
            self._last_ack = self._bytes_in
            ack = messages.control(messages.ACK, messages.u32(self._bytes_in), self._out_chunk_size)
            self._write(ack, optional=True)
        due = decoder.backlog and not self._closed
        if due != self._backlog_due:
            self._backlog_due = due
            self._update_reading()
        if due:
            self._loop.call_soon(self._guard, self._decode)

    def _count_messages(self, count: int) -> None:
        if not count:
            return
        limits = self._limits
        if not self._published and self._decoder.messages > limits.pre_publish_max_messages:
            raise _Refused(
                "flood", f"more than {limits.pre_publish_max_messages} messages before publishing"
            )
        stalled = self._host.stalled
        if stalled > self._stalled_seen:
            # What the client sent while the server stalled arrives at once now.
            self._messages.grant(stalled - self._stalled_seen)
            self._stalled_seen = stalled
        if not self._messages.take(count, self._loop.time()):
            raise _Refused("flood", f"more than {limits.messages_per_second:g} messages a second")

    def _drain(self) -> None:
        pending = self._pending
        while pending and self._auth_task is None and not self._closed:
            msg = pending.popleft()
            kind = msg.type_id
            # Media first and without _handle's call: ~70 such messages a
            # second per camera, the rest a handful per connection.
            if kind == messages.VIDEO or kind == messages.AUDIO:
                self._media(kind, msg.timestamp, msg.payload)
            else:
                self._handle(msg)

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
                self._pong(ping)
        elif kind == messages.WINDOW_ACK_SIZE:
            window = messages.window_ack_size(msg.payload)
            if window is not None:
                self._ack_window = max(window, 4096)
        # Set Chunk Size / Abort were applied by the decoder; Ack and Set Peer
        # Bandwidth need nothing from a server that only receives.

    def _pong(self, ping: bytes) -> None:
        """Answer a ping request, within the ping budget (the rest only asks us to write)."""
        reply = messages.user_control(messages.PING_RESPONSE, ping, self._out_chunk_size)
        if not self._pings.take(1, self._loop.time()) or not self._write(reply, optional=True):
            self._host.counters.pings_ignored += 1

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
        client = (
            forwarded.vouched_client(props, self._host.edge_token)
            if isinstance(props, dict)
            else None
        )
        if client is not None:
            # An ingest edge relays this camera: count it by the camera's
            # address (key gate, cap of strangers), not by the edge's.
            address = address_key(client)
            self._host.readdress(self, address)
            self.address = address
            self.peer = f"{client} via edge {self.peer}"
            self._vouched = True
        self._prefix = f"rtmp {self.peer} {redact_app(app)}"
        self._write(
            messages.connect_replies(
                txid,
                window=WINDOW_ACK_SIZE,
                chunk_size=self._out_chunk_size,
                new_chunk_size=SERVER_CHUNK_SIZE,
            )
        )
        self._out_chunk_size = SERVER_CHUNK_SIZE

    def _on_publish(self, stream_id: int, stream_name: str) -> None:
        if self._sink is not None or self._auth_task is not None or self._published:
            raise _RtmpProtocolError("second publish on one connection")
        app = self._app or ""
        self._prefix = f"rtmp {self.peer} {redact_app(app)}/{redact_name(stream_name)}"
        # Nothing more is read until the answer (_update_reading sees the task).
        self._auth_task = self._loop.create_task(self._authorize(app, stream_name, stream_id))
        self._update_reading()

    async def _authorize(self, app: str, stream_name: str, stream_id: int) -> None:
        sink: PublishSink | None = None
        async with self._host.key_gate.turn(self.address) as turn:
            try:
                answer = self._host.authorize(app, stream_name, self.peer)
                sink = await answer if inspect.isawaitable(answer) else answer
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: authorizer failed", self._prefix)
                sink = None
            if sink is None and not self._vouched:
                turn.failed()  # the address's next key check waits (keygate.py)
            # Not after an edge's publish: the edge throttles its cameras' key
            # checks at its own gate, and what it sends later are a handoff's
            # forks and reconnects, refused while the target does not run the
            # stream yet. Paused here, the edge's next call (0.5 s on) waited
            # out the pause, 2 s, with the handoff (#15).
        if self._closed:  # the peer left while we were asking
            if sink is not None:
                self._safe_close_sink(sink, "publisher left during authorization")
            return
        self._auth_task = None
        if sink is None:
            self._send_status(stream_id, "error", "NetStream.Publish.BadName", "Publish rejected.")
            self.refuse("unauthorized", "publish rejected (unknown stream or wrong key)")
            return
        self._guard(self._accept, app, stream_name, stream_id, sink)
        if self._closed:
            return
        self._update_reading()
        self._guard(self._drain)

    def _accept(self, app: str, stream_name: str, stream_id: int, sink: PublishSink) -> None:
        identity = stream_identity(app, stream_name)
        old = self._host.claim(identity, self)
        if old is not None and old is not self:
            old.fail(f"replaced by a new publisher from {self.peer}")
        self._host.counters.publishes_total += 1
        self._identity = identity
        self._sink = sink
        self._published = True
        self.stranger = False
        self._host.published(self)
        limits = self._limits
        self._decoder.set_limits(
            max_message_size=limits.max_message_size, max_pending_bytes=limits.max_pending
        )
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

    def _write(self, data: bytes, *, optional: bool = False) -> bool:
        return self._outbox.write(data, optional=optional)

    def _send_command(self, stream_id: int, values: list[object]) -> None:
        self._write(messages.command(stream_id, values, self._out_chunk_size))

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._write(messages.on_status(stream_id, level, code, description, self._out_chunk_size))


# Log lines for refusals at admission (admission.Admission.admit's reasons).
_ADMISSION_REFUSALS = {
    "capacity": "refused: the connection cap is reached",
    "per_address": "refused: too many connections not publishing yet from this address",
}
