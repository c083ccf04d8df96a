"""One UDP port and one thread for every SRT publisher of a worker.

Who calls this: standalone mode starts one `SrtListener` (app/standalone.py)
beside the RTMP port and keeps its table of streams current (`publish`); so
does a cluster worker. The ingest edge (edge/srt_relay.py) hosts it with a
`lookup` instead of a table: its passphrase cache, which answers at once
and may say `LATER` (a lookup started: the caller is refused with
SRT_REJX_DOWN, libsrt's "service unavailable", and its retry succeeds).
What it is given and gives back:

- in: `publish(key, Publication)`, the streams that take SRT publishers with
  their passphrase and latency (the owner resolves the Secrets, in its event
  loop; the listener never waits on anything but libsrt);
- out: `Handler.deliver(key, peer, sock)`, one Unix stream socket per
  accepted publisher carrying its MPEG-TS bytes as received (SRT has already
  reordered, recovered and decrypted them), and `Handler.refused(key, ...)`,
  a refusal that the stream's status should show (a wrong passphrase), at
  most once per stream per NOTE_INTERVAL. Behind an edge the key exchange
  runs at the edge's listener: the edge reports such a refusal to the owner
  in a stream ID (protocols/srt/vouch.py) and the owner's listener notes it
  as if its own key exchange had failed.

Why here and not in the engine processes: one UDP port cannot be shared by
processes without splitting a connection's datagrams among them, and libsrt's
sockets live in its own user space, so they cannot be handed over like a TCP
socket (pool/ipc.py does that for RTMP). The listener therefore relays the
bytes; the socket it delivers is what crosses to the engine process.

The handshake, step by step (libsrt calls `_on_handshake` in its receiver
thread before the handshake completes, which is SRT's standard place to pick
a passphrase by stream ID):

    stream ID parsed (protocols/srt/streamid.py) ── refused: a malformed ID, m=request
      → an edge's report of a camera it refused ── proven: noted on the stream,
        refused with REJX_NOTED; not proven: refused (a bad stream ID)
      → with an edge token, the camera's own address the edge vouches for
        (protocols/srt/vouch.py) replaces the edge's as the peer
      → draining (the edge's) ── refused: try again (REJX_DOWN)
      → the stream's publication looked up ── LATER: refused, try again
      → caps: all connections, per address ── refused: capacity, per address
      → the stream's passphrase and latency set on the new socket (an unknown
        stream: a random passphrase, so it fails below like a wrong one and a
        stranger cannot learn which streams exist)
      → libsrt's key exchange ── fails: wrong or missing passphrase, seen as a
        handshake that never reached accept (`HANDSHAKE_TIMEOUT`, or the socket
        closed first): refused as unauthorized, noted on the stream
      → accepted: bytes relayed until the peer leaves, is idle, exceeds its
        bitrate, or the stream's side stops reading (buffer cap)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from camstream.spec import StreamKey
from camstream_worker.metrics.worker import SRT_REFUSAL_REASONS
from camstream_worker.protocols.srt import streamid, vouch
from camstream_worker.servers.rtmp.admission import address_key
from camstream_worker.servers.rtmp.refusals import Refusals
from camstream_worker.servers.srt.limits import PACKET_ROOM, SrtLimits, buffer_packets
from camstream_worker.srt import libsrt

log = logging.getLogger(__name__)

# At most one status note per stream this often about refused publishers: at
# the edge, one report to the owner per stream this often (srt_relay.py).
NOTE_INTERVAL = 30.0
# The refusals a stream's status shows, and what it says about them. Behind an
# edge only these names cross to the owner (vouch.py): no peer-chosen text.
NOTED = {
    "WrongPassphrase": "wrong or missing passphrase",
    "BitrateExceeded": "above the bitrate cap",
}
HOUSEKEEPING = 0.25  # seconds between checks of timers, buffers and windows
READS_PER_TURN = 64  # messages read from one connection before the others' turn
DEFAULT_LATENCY_MS = 120  # SRT's own default, and the spec's (latencyMs)
MAX_NOTED = 10_000  # streams whose last note is remembered before the old ones are forgotten


class Later:
    """A lookup's answer: not known yet, asked for; the caller should try again."""

    def __repr__(self) -> str:
        return "LATER"


LATER = Later()


@dataclass(frozen=True, slots=True)
class Publication:
    """A stream that takes SRT publishers. `passphrase` is a secret: never logged."""

    passphrase: str = dataclasses.field(repr=False)
    latency_ms: int = DEFAULT_LATENCY_MS


class Handler(Protocol):
    """Who runs the streams; called from the listener's thread, must not block."""

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        """A publisher of `key` was accepted: `sock` carries its bytes (the callee owns it)."""
        ...

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        """A publisher of `key` at `peer` ("host:port") was refused for `reason` (a key of
        NOTED), which its status should show with `message`."""
        ...


@dataclass(slots=True)
class _Pending:
    key: StreamKey
    address: str
    peer: str
    since: float
    known: bool  # the stream takes publishers here (else it was given a random passphrase)


@dataclass(slots=True)
class _Connection:
    key: StreamKey
    address: str
    peer: str
    out: socket.socket
    since: float
    last_data: float
    window_start: float
    window_bytes: int = 0
    queued: bytearray = dataclasses.field(default_factory=bytearray)
    received: int = 0


class SrtListener:
    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        limits: SrtLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        lookup: Callable[[StreamKey], Publication | Later | None] | None = None,
        edge_token: str | None = None,
        turn: float = 0.0,
    ) -> None:
        """`lookup`: where a stream's publication is found (default: the `publish`ed table);
        called in libsrt's thread, it must answer at once. `edge_token`: believe the client
        address an edge vouches for in a stream ID (protocols/srt/vouch.py). `turn`: seconds
        the thread rests after each wake-up, so that one wake-up reads every connection's
        messages of that long (0: a wake-up per message, as soon as it arrives)."""
        self._turn = turn
        self.turns = 0  # wake-ups of the listener's thread
        self._host, self._requested_port = host, port
        self._lookup = lookup
        self._edge_token = edge_token
        self.accepting = True
        self._handler = handler
        self._limits = limits or SrtLimits()
        self._clock = clock
        self._streams: dict[StreamKey, Publication] = {}
        self._lock = threading.Lock()  # the handshake callback runs in libsrt's thread
        self._pending: dict[int, _Pending] = {}
        self._connections: dict[int, _Connection] = {}
        self._per_address: dict[str, int] = {}
        self._last_note: dict[StreamKey, float] = {}
        self.refusals = Refusals(clock, log, reasons=SRT_REFUSAL_REASONS)
        self._socket = -1
        self._hook: object = None
        self._epoll: libsrt.Epoll | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port = port
        self.bytes_received = 0

    # -- the owner's side

    def start(self) -> None:
        """Bind and start serving; SrtError (libsrt missing, port taken) otherwise."""
        sock = libsrt.create()
        try:
            libsrt.set_bool(sock, libsrt.SRTO_RCVSYN, False)
            libsrt.set_bool(sock, libsrt.SRTO_SNDSYN, False)
            libsrt.set_int(sock, libsrt.SRTO_RCVBUF, self._limits.receive_buffer)
            libsrt.set_int(sock, libsrt.SRTO_PEERIDLETIMEO, int(self._limits.idle_timeout * 1000))
            libsrt.bind(sock, self._host, self._requested_port)
            self._hook = libsrt.on_listen(sock, self._on_handshake)
            libsrt.listen(sock, 128)
            self._epoll = libsrt.Epoll()
            self._epoll.add(sock)
        except BaseException:
            libsrt.close(sock)
            raise
        self._socket = sock
        self.port = libsrt.bound_port(sock)
        self._thread = threading.Thread(target=self._serve, name="srt listener", daemon=True)
        self._thread.start()
        log.info("srt: listening on %s:%d (udp)", self._host, self.port)

    def publish(self, streams: dict[StreamKey, Publication]) -> None:
        """The streams that take publishers now (the whole table, replaced at once)."""
        self._streams = dict(streams)

    def stop_accepting(self) -> None:
        """Refuse new publishers (try again: elsewhere); the accepted ones stay."""
        self.accepting = False

    def publishers(self) -> int:
        with self._lock:
            return len(self._connections) + len(self._pending)

    def close(self) -> None:
        self.accepting = False
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            connections = list(self._connections.items())
            self._connections.clear()
        for sock, connection in connections:
            libsrt.close(sock)
            connection.out.close()
        if self._socket >= 0:
            libsrt.close(self._socket)
            self._socket = -1
        if self._epoll is not None:
            self._epoll.release()
            self._epoll = None

    def stats(self) -> dict[str, int]:
        with self._lock:
            counts = {"connections": len(self._connections), "handshaking": len(self._pending)}
        return counts | {"bytes_received": self.bytes_received} | self.refusals.stats()

    # -- libsrt's receiver thread

    def _on_handshake(
        self, sock: int, _version: int, peer_pointer: int | None, raw_id: bytes | None
    ) -> int:
        try:
            return self._decide(sock, libsrt.peer_from_pointer(peer_pointer), raw_id or b"")
        except Exception:  # an exception must not unwind into libsrt's thread
            log.exception("srt: handshake callback failed")
            libsrt.set_reject_reason(sock, libsrt.REJX_DOWN)
            return -1

    def _decide(self, sock: int, peer: str, raw_id: bytes) -> int:
        text = raw_id.decode("utf-8", errors="replace")
        parsed = streamid.parse(text)
        if isinstance(parsed, streamid.Refused):
            return self._reject(sock, "stream_id", peer, parsed.reason, libsrt.REJX_BAD_REQUEST)
        report = vouch.reported(text, parsed, self._edge_token)
        if report is not None:
            return self._reported(sock, parsed, report, peer)
        vouched = vouch.client_of(text, parsed, self._edge_token)
        if vouched is not None:
            peer = vouched  # the camera's own: counted as such, named so in logs and status
        address = address_key(vouch.host_of(peer))
        if not self.accepting:
            return self._reject(sock, "draining", peer, "draining", libsrt.REJX_DOWN)
        found = self._streams.get(parsed) if self._lookup is None else self._lookup(parsed)
        if isinstance(found, Later):
            detail = f"{parsed}: passphrase not known yet, looking it up; try again"
            return self._reject(sock, "lookup", peer, detail, libsrt.REJX_DOWN)
        publication = found
        with self._lock:
            if len(self._connections) + len(self._pending) >= self._limits.max_connections:
                cap = self._limits.max_connections
                return self._reject(
                    sock, "capacity", peer, f"{cap} connections already", libsrt.REJX_OVERLOAD
                )
            if self._per_address.get(address, 0) >= self._limits.max_per_address:
                cap = self._limits.max_per_address
                return self._reject(
                    sock, "per_address", peer, f"{cap} connections from {address} already",
                    libsrt.REJX_OVERLOAD,
                )  # fmt: skip
            if publication is None:
                # An unknown stream gets a passphrase nobody knows, so it fails in the
                # key exchange exactly as a wrong passphrase does: a stranger cannot
                # tell which streams exist (as for RTMP, where both get BadName).
                libsrt.set_string(sock, libsrt.SRTO_PASSPHRASE, secrets.token_urlsafe(32))
                latency_ms = DEFAULT_LATENCY_MS
            else:
                libsrt.set_string(sock, libsrt.SRTO_PASSPHRASE, publication.passphrase)
                libsrt.set_int(sock, libsrt.SRTO_RCVLATENCY, publication.latency_ms)
                latency_ms = publication.latency_ms
            # Buffers for what the latency needs, set before libsrt makes them (after
            # this callback): the flow window first, as libsrt caps the buffer by it.
            packets = buffer_packets(
                latency_ms, self._limits.max_bitrate, self._limits.receive_buffer
            )
            libsrt.set_int(sock, libsrt.SRTO_FC, packets)
            libsrt.set_int(sock, libsrt.SRTO_RCVBUF, packets * PACKET_ROOM)
            known = publication is not None
            self._pending[sock] = _Pending(parsed, address, peer, self._clock(), known)
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return 0

    def _reported(self, sock: int, key: StreamKey, report: vouch.Report, peer: str) -> int:
        """An edge's report that it refused a camera: noted as this listener's own refusal."""
        if report.client is None or report.reason not in NOTED:
            detail = f"{key}: a refusal report ({report.reason}) without a valid edge proof"
            return self._reject(sock, "stream_id", peer, detail, libsrt.REJX_BAD_REQUEST)
        if self._note(key, report.reason, report.client):
            log.info(
                "[%s] srt: the edge at %s refused publisher %s: %s",
                key, peer, report.client, NOTED[report.reason],
            )  # fmt: skip
        libsrt.set_reject_reason(sock, libsrt.REJX_NOTED)
        return -1

    def _reject(self, sock: int, reason: str, peer: str, detail: str, code: int) -> int:
        libsrt.set_reject_reason(sock, code)
        self.refusals.refuse(reason, f"srt {peer}", detail)
        return -1

    # -- the listener's thread

    def _serve(self) -> None:
        assert self._epoll is not None
        scratch = libsrt.Scratch(READS_PER_TURN * libsrt.MAX_PAYLOAD)
        next_check = self._clock()
        while not self._stopping.is_set():
            waiting = any(c.queued for c in self._connections.values())
            full = False  # a connection had more than a turn's reads waiting
            events = self._epoll.wait(20 if waiting else int(HOUSEKEEPING * 1000))
            woke = time.monotonic()  # the rest is real time, whatever clock the limits run on
            self.turns += 1
            for sock, _events in events:
                if sock == self._socket:
                    self._accept_all()
                elif sock in self._connections:
                    full = self._read(sock, scratch) or full
            now = self._clock()
            if waiting:
                self._flush_all()
            if now >= next_check:
                next_check = now + HOUSEKEEPING
                self._housekeeping(now)
            if self._turn > 0 and not full:
                # Rest, so that the next wait finds every camera's messages of a turn
                # at once: libsrt holds them (the receive buffer is sized for that, and
                # SRT's ACKs run in libsrt's own thread meanwhile).
                self._stopping.wait(max(0.0, self._turn - (time.monotonic() - woke)))

    def _accept_all(self) -> None:
        while True:
            try:
                accepted = libsrt.accept(self._socket)
            except libsrt.SrtError as exc:
                log.warning("srt: accept failed: %s", exc)
                return
            if accepted is None:
                return
            self._adopt(*accepted)

    def _adopt(self, sock: int, _peer: str) -> None:
        with self._lock:
            pending = self._pending.pop(sock, None)
        if pending is None or not pending.known:  # cannot happen (see _decide); refuse anyway
            libsrt.close(sock)
            return
        peer = pending.peer  # the vouched camera's address behind an edge, else the same
        try:
            libsrt.set_bool(sock, libsrt.SRTO_RCVSYN, False)
        except libsrt.SrtError:  # it broke between the handshake and here (a caller that left)
            self._release_address(pending.address)
            libsrt.close(sock)
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        now = self._clock()
        connection = _Connection(pending.key, pending.address, peer, ours, now, now, now)
        with self._lock:
            self._connections[sock] = connection
        assert self._epoll is not None
        self._epoll.add(sock)
        log.info("[%s] srt: publisher %s accepted", pending.key, peer)
        try:
            self._handler.deliver(pending.key, peer, theirs)
        except Exception:
            log.exception("[%s] srt: could not hand the publisher over", pending.key)
            theirs.close()
            self._drop(sock, None, "")

    def _read(self, sock: int, scratch: libsrt.Scratch) -> bool:
        """Read what `sock` has, up to READS_PER_TURN messages; True when it may have more."""
        connection = self._connections[sock]
        size = 0
        more = True
        for _ in range(READS_PER_TURN):
            got = libsrt.receive_into(sock, scratch, size)
            if got < 0:
                self._drop(sock, None, "the publisher left")
                return False
            if got == 0:
                more = False
                break
            size += got
        if size:
            connection.received += size
            connection.window_bytes += size
            self.bytes_received += size
            connection.queued += memoryview(scratch.data)[:size]
            connection.last_data = self._clock()
        if len(connection.queued) > self._limits.max_buffer:
            cap = self._limits.max_buffer
            self._drop(sock, "buffer", f"{cap} bytes waiting for the stream to take them")
            return False
        self._flush(sock, connection)
        return more

    def _flush(self, sock: int, connection: _Connection) -> None:
        if not connection.queued:
            return
        try:
            sent = connection.out.send(connection.queued)
        except BlockingIOError:
            return
        except OSError:  # the stream's side closed: it stopped, or a newer publisher replaced it
            self._drop(sock, None, "the stream stopped taking this publisher")
            return
        del connection.queued[:sent]

    def _flush_all(self) -> None:
        for sock, connection in list(self._connections.items()):
            self._flush(sock, connection)

    def _housekeeping(self, now: float) -> None:
        limits = self._limits
        with self._lock:
            failed = [
                (sock, p)
                for sock, p in self._pending.items()
                if now - p.since > limits.handshake_timeout
                or libsrt.state(sock) >= libsrt.SRTS_BROKEN
            ]
            for sock, pending in failed:
                del self._pending[sock]
                self._release(pending.address)
        for _sock, pending in failed:
            prefix = f"srt {pending.peer}"
            if not pending.known:
                self.refusals.refuse(
                    "stream_id", prefix, f"{pending.key} takes no SRT publishers here"
                )
                continue
            why = "the handshake failed after the stream ID: wrong passphrase, or none"
            self.refusals.refuse("unauthorized", prefix, f"{pending.key}: {why}")
            self._note(pending.key, "WrongPassphrase", pending.peer)
        for sock, connection in list(self._connections.items()):
            if libsrt.state(sock) >= libsrt.SRTS_BROKEN:
                self._drop(sock, None, "the connection broke")
            elif now - connection.last_data > limits.idle_timeout:
                self._drop(sock, "timeout", f"no data for {limits.idle_timeout:g} s")
            elif now - connection.window_start >= limits.bitrate_window:
                rate = connection.window_bytes / (now - connection.window_start)
                if rate > limits.max_bitrate:
                    self._drop(
                        sock, "bitrate",
                        f"{rate * 8 / 1e6:.1f} Mbit/s over the cap of "
                        f"{limits.max_bitrate * 8 / 1e6:g} Mbit/s",
                    )  # fmt: skip
                    self._note(connection.key, "BitrateExceeded", connection.peer)
                    continue
                connection.window_start, connection.window_bytes = now, 0
            elif not self._stream_reads(connection):
                self._drop(sock, None, "the stream stopped taking this publisher")

    @staticmethod
    def _stream_reads(connection: _Connection) -> bool:
        """False once the stream's end of the socket is closed (nothing is ever sent back)."""
        try:
            return connection.out.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _drop(self, sock: int, reason: str | None, detail: str) -> None:
        with self._lock:
            connection = self._connections.pop(sock, None)
            if connection is not None:
                self._release(connection.address)
        if self._epoll is not None:
            self._epoll.remove(sock)
        libsrt.close(sock)
        if connection is None:
            return
        connection.out.close()
        if reason is not None:
            self.refusals.refuse(reason, f"srt {connection.peer}", f"{connection.key}: {detail}")
        else:
            log.info("[%s] srt: publisher %s closed: %s", connection.key, connection.peer, detail)

    def _release_address(self, address: str) -> None:
        with self._lock:
            self._release(address)

    def _release(self, address: str) -> None:
        left = self._per_address.get(address, 0) - 1
        if left > 0:
            self._per_address[address] = left
        else:
            self._per_address.pop(address, None)

    def _note(self, key: StreamKey, reason: str, peer: str) -> bool:
        """Tell the handler, unless `key` was noted within NOTE_INTERVAL; True if told.
        Called from the listener's thread and (an edge's report) from libsrt's."""
        now = self._clock()
        with self._lock:
            if now - self._last_note.get(key, -NOTE_INTERVAL) < NOTE_INTERVAL:
                return False
            if len(self._last_note) >= MAX_NOTED:  # keys of old notes: the interval is over
                self._last_note = {
                    k: t for k, t in self._last_note.items() if now - t < NOTE_INTERVAL
                }
            self._last_note[key] = now
        message = f"refused a publisher: {NOTED[reason]} (last from {vouch.host_of(peer)})"
        with contextlib.suppress(Exception):
            self._handler.refused(key, reason, message, peer)
        return True
