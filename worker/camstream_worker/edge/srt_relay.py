"""The edge's SRT port: one UDP listener for every stream, each publisher relayed to its owner.

Who calls this: cli.py adds one `SrtRelay` to the `Edge` (server.py) with
`--srt-port`; tests make one on loopback.

    camera ──SRT (its passphrase)──▶ edge: SrtListener (servers/srt/listener.py)
        └─ decrypted MPEG-TS bytes, unchanged ─▶ TCP leg ──▶ owning worker's leg port
                          └─ during a handoff, also ─▶ TCP leg ──▶ the handoff's target

The listener is the worker's own (caps, idle and bitrate limits, refusals);
here it looks passphrases up in the edge's cache (passphrases.py) instead of
a table, since the edge runs no streams. Each accepted publisher becomes a
`_Relay`: it reads the Unix socket the listener delivers, cuts the bytes into
whole 188-byte packets (tspackets.py) and gives them to one `_Feed` per owner
the ring names (owners.py), recomputed at every HOUSEKEEPING tick:

    wanted owner, no feed ─▶ leg opened: a TCP connection to the worker's SRT
        port number (servers/srt/edge_leg.py), its challenge answered with a
        proof under the edge token and the stream's passphrase
        (protocols/srt/edge_leg.py); once the worker says OK it is written
        once per read batch, starting at the next PAT so the worker's demuxer
        syncs
    feed no longer wanted (the ring serves the target) ─▶ closed
    feed broken or refused ─▶ closed, opened again after OWNER_RETRY
    feed over MAX_BUFFER (the worker does not take the bytes) ─▶ its queue is
        dropped and it starts again at the next PAT (the RTMP edge's policy,
        upstream.py's 4 MiB)

Why TCP and not a second SRT connection (as before): the camera's SRT
connection is the only libsrt connection per camera here, its threads,
buffers and one call per 1316-byte message; the hop to a worker is inside
the cluster, where SRT's recovery buys nothing over TCP. Measured against
that second connection: about 0.6x the edge's CPU and 0.55x its memory per
camera, and half the worker's CPU (bench/README.md, "SRT through the
edge"). The camera's SRT connection stays through all of it: no worker
change makes an SRT camera reconnect. No demuxing here; the worker's SRT
ingest stays the one ingest path.

A camera refused after its stream ID (a wrong passphrase: the key exchange
runs here, so the owner never sees the attempt) is reported to the stream's
owner, which writes the stream's status (the edge only reads CameraStreams):
one SRT call to the owner's port whose stream ID carries the reason, vouched
with the edge token (protocols/srt/vouch.py); the owner notes it and
refuses the call with REJX_NOTED. No bytes flow. At most one report per
stream per NOTE_INTERVAL (the listener notes no more often) and at most
MAX_REPORTS in flight, so a flood of wrong passphrases costs the owner a
handshake per stream every 30 s and the API server one status write then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

from camstream.spec import StreamKey
from camstream_worker.edge import owners, tspackets
from camstream_worker.edge.passphrases import PassphraseCache
from camstream_worker.edge.server import Edge
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.protocols.srt import edge_leg, vouch
from camstream_worker.servers.srt.limits import SrtLimits
from camstream_worker.servers.srt.listener import NOTED, Publication, SrtListener
from camstream_worker.srt import libsrt

__all__ = ["HOUSEKEEPING", "MAX_BUFFER", "MAX_REPORTS", "OPEN_TIMEOUT", "OWNER_RETRY", "SrtRelay"]

log = logging.getLogger(__name__)

# Bytes queued for one worker before the edge drops them and starts that
# worker again at the next PAT: the RTMP edge's figure (upstream.py), 32 s of
# a 1 Mbit/s camera, far more than a live worker lags.
MAX_BUFFER = 4 * 1024 * 1024
# From the SRT connect to the worker's accept (its key exchange included).
OPEN_TIMEOUT = 5.0
# Seconds before a lost or refused worker is called again (the RTMP edge's
# figure, session.py): a new owner refuses until its table has the stream.
OWNER_RETRY = 0.25
# Seconds between looks at the ring, the feeds' states and their queues.
HOUSEKEEPING = 0.1
# The kernel's send buffer of a leg to a worker: 0.1 s of a 1 Mbit/s camera is
# 12.5 KB, so a read batch always fits; Linux's default grows to megabytes per
# connection when a worker reads slowly, and MAX_BUFFER is the bound that
# counts (in the edge's own queue, where it can be dropped at a PAT).
LEG_SEND_BUFFER = 64 * 1024
# Seconds the edge's SRT listener rests between wake-ups (SrtListener's
# `turn`): one wake-up reads every camera's messages of that long, where a
# wake-up per message (~95 a second per camera at 1 Mbit/s) was a fifth of the
# edge's CPU. The relay reads each camera once per READ_BATCH_SECONDS (0.1 s)
# anyway; a camera's buffer holds its latency plus 0.5 s (limits.BUFFER_SLACK).
LISTENER_TURN = 0.05
# Bytes read from a publisher's socket at once.
READ_SIZE = 64 * 1024
# Bytes searched for a PAT before a feed starts at a packet boundary anyway.
MAX_SYNC_SEARCH = 1024 * 1024
# Refusal reports to owners in flight at once (each a handshake, answered in a
# round trip); beyond it a report is dropped and counted: the stream's next
# refusal, a NOTE_INTERVAL later, tries again.
MAX_REPORTS = 16


@dataclass(slots=True)
class _Feed:
    """One TCP leg from the edge to a worker, for one camera (protocols/srt/edge_leg.py)."""

    worker: str
    address: tuple[str, int]
    opened: float
    queue: bytearray = field(default_factory=bytearray)
    synced: bool = False  # a PAT was found: whole packets flow from here on
    searched: int = 0
    connected: bool = False  # the worker said OK
    broken: str | None = None  # why the leg ended, refused or failed
    transport: asyncio.Transport | None = None  # from the connect on, so `close` ends a handshake
    connecting: asyncio.Task[None] | None = None
    sent: int = 0

    def push(self, packets: bytes) -> bool:
        """Queue whole packets; False when the queue went over MAX_BUFFER (dropped)."""
        if not self.synced:
            at = tspackets.pat_start(packets)
            if at is None:
                self.searched += len(packets)
                if self.searched < MAX_SYNC_SEARCH:
                    return True
                at = 0  # a camera without a PAT in 1 MiB: start at a packet boundary
            self.synced = True
            packets = packets[at:]
        self.queue += packets
        if len(self.queue) > MAX_BUFFER:
            self.queue.clear()
            self.synced, self.searched = False, 0
            return False
        return True

    def flush(self) -> None:
        """Write the queued packets in one call, unless the worker lags by MAX_BUFFER.

        Over that the queue stays here and grows until `push` drops it and starts
        again at a PAT: at most twice MAX_BUFFER per worker and camera."""
        transport = self.transport
        if not self.connected or transport is None or not self.queue:
            return
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_BUFFER:
            return
        transport.write(bytes(self.queue))  # asyncio sends at once; the rest waits in its buffer
        self.sent += len(self.queue)
        self.queue.clear()

    def close(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.close()


class _Leg(asyncio.Protocol):
    """The edge's end of a leg: the worker's challenge answered, its OK awaited, then bytes."""

    def __init__(self, feed: _Feed, key: StreamKey, client: str, secrets: tuple[str, str]) -> None:
        self._feed = feed
        self._key, self._client = key, client
        self._token, self._passphrase = secrets
        self._transport: asyncio.Transport | None = None
        self._lines = b""
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # The feed holds it at once: a feed closed mid-handshake (no answer in
        # OPEN_TIMEOUT, or no longer wanted) must not leave a leg that a late OK
        # would make the stream's newest publisher, silent.
        self._transport = self._feed.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LEG_SEND_BUFFER)

    def data_received(self, data: bytes) -> None:
        if self._feed.connected:
            return  # the worker sends nothing after OK
        self._lines += data
        if len(self._lines) > 2 * edge_leg.MAX_LINE:
            self._fail("the worker's lines are too long")
            return
        while b"\n" in self._lines and not self._feed.connected and self._transport is not None:
            line, _, self._lines = self._lines.partition(b"\n")
            try:
                self._step(line + b"\n")
            except edge_leg.LegError as exc:
                self._fail(f"not a leg: {exc}")

    def _step(self, line: bytes) -> None:
        assert self._transport is not None
        if not self._answered:
            nonce = edge_leg.nonce_of(line)
            self._transport.write(
                edge_leg.request(self._token, self._passphrase, nonce, self._key, self._client)
            )
            self._answered = True
            return
        reason = edge_leg.parse_answer(line)
        if reason is not None:
            self._fail(f"refused: {edge_leg.REASONS[reason]}")
            return
        self._feed.connected = True
        log.info("[%s] srt edge: feeding worker %s", self._key, self._feed.worker)

    def _fail(self, why: str) -> None:
        self._feed.broken = why
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._feed.broken is None:
            self._feed.broken = f"the worker closed ({exc})" if exc else "the worker closed"


class _Relay:
    """One accepted SRT publisher: its bytes to every owner the ring names."""

    def __init__(
        self,
        host: SrtRelay,
        key: StreamKey,
        peer: str,
        sock: socket.socket,
        publication: Publication,
    ) -> None:
        self._host = host
        self.key = key
        self.peer = peer
        self._sock = sock
        self._publication = publication
        self._aligner = tspackets.Aligner()
        self.feeds: dict[str, _Feed] = {}
        self._retry_at: dict[str, float] = {}
        self._seen: set[str] = set()  # workers fed before: opening one again is a reconnect
        self.received = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        edge = self._host.edge
        metrics = edge.metrics
        try:
            self.housekeeping(time.monotonic())
            while data := await loop.sock_recv(self._sock, READ_SIZE):
                self.received += len(data)
                metrics.bytes_in.inc(len(data))
                packets = self._aligner.feed(data)
                if packets:
                    for feed in list(self.feeds.values()):
                        self._push(feed, packets)
                if len(data) < READ_SIZE and edge.limits.read_batch_seconds > 0:
                    # Read once per batch, as the RTMP edge does (server.py's
                    # READ_BATCH_SECONDS): the listener delivers a camera's bytes one SRT
                    # message (1316 bytes) at a time, and a wake-up per message was most
                    # of the edge's CPU. A full read means more waits: read on at once.
                    await asyncio.shield(edge.tick())
        except OSError:
            pass  # the listener dropped the publisher (it left, idle, over a limit)
        finally:
            self._sock.close()
            for worker in list(self.feeds):
                self._close(worker)

    def _push(self, feed: _Feed, packets: bytes) -> None:
        if not feed.push(packets):
            self._host.edge.metrics.overflows.inc()
            log.warning(
                "[%s] srt edge: worker %s took no bytes for %d; starting it again at a PAT",
                self.key, feed.worker, MAX_BUFFER,
            )  # fmt: skip
        before = feed.sent
        feed.flush()
        self._host.edge.metrics.bytes_out.inc(feed.sent - before)

    def housekeeping(self, now: float) -> None:
        """Open feeds to the owners the ring names, close the others, flush queues."""
        edge = self._host.edge
        doc = edge.ring()
        wanted = owners.owners(doc, self.key)
        for worker in list(self.feeds):
            feed = self.feeds[worker]
            address = owners.address(doc, worker, self._host.worker_srt_port)
            if worker not in wanted or address != feed.address:
                self._close(worker)
            else:
                self._tend(worker, feed, now)
        for worker in wanted:
            if worker in self.feeds or now < self._retry_at.get(worker, 0.0):
                continue
            address = owners.address(doc, worker, self._host.worker_srt_port)
            if address is not None:
                self._open(worker, address, now, handoff=worker != wanted[0])

    def _tend(self, worker: str, feed: _Feed, now: float) -> None:
        """One wanted feed: flushed once the worker said OK, lost once broken or unanswered."""
        if feed.broken is not None:
            self._lost(worker, feed.broken)
        elif feed.connected:
            before = feed.sent
            feed.flush()
            self._host.edge.metrics.bytes_out.inc(feed.sent - before)
        elif now - feed.opened > OPEN_TIMEOUT:
            self._lost(worker, f"no answer in {OPEN_TIMEOUT:g} s")

    def _open(self, worker: str, address: tuple[str, int], now: float, *, handoff: bool) -> None:
        metrics = self._host.edge.metrics
        token = self._host.edge.edge_token
        assert token, "SrtRelay is made only with an edge token"
        current = self._host.passphrases.lookup(self.key)
        if isinstance(current, Publication):  # a rotated passphrase reaches new owners too
            self._publication = current
        feed = _Feed(worker, address, now)
        secrets = (token, self._publication.passphrase)
        loop = asyncio.get_running_loop()
        feed.connecting = loop.create_task(
            self._connect(loop, feed, secrets), name=f"srt edge leg {self.key} {worker}"
        )
        self.feeds[worker] = feed
        if worker in self._seen:
            metrics.owner_connects.inc()
        self._seen.add(worker)
        if handoff:
            metrics.handoffs_forked.inc()

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, feed: _Feed, secrets: tuple[str, str]
    ) -> None:
        try:
            await loop.create_connection(
                lambda: _Leg(feed, self.key, self.peer, secrets), *feed.address
            )
        except OSError as exc:
            feed.broken = f"connect failed: {exc}"

    def _lost(self, worker: str, why: str) -> None:
        log.info("[%s] srt edge: worker %s lost (%s); calling again", self.key, worker, why)
        self._host.edge.metrics.owner_lost.inc()
        self._close(worker)
        self._retry_at[worker] = time.monotonic() + OWNER_RETRY

    def _close(self, worker: str) -> None:
        feed = self.feeds.pop(worker, None)
        if feed is not None:
            feed.close()


class _Handler:
    """The listener's Handler: hops from libsrt's thread into the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, relay: SrtRelay) -> None:
        self._loop = loop
        self._relay = relay

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        self._loop.call_soon_threadsafe(self._relay.adopt, key, peer, sock)

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        # A wrong passphrase, or a rotated one the cache has not read yet.
        self._relay.passphrases.refused(key)
        self._loop.call_soon_threadsafe(self._relay.report, key, reason, peer)


@dataclass(frozen=True, slots=True)
class _Report:
    key: StreamKey
    worker: str
    opened: float


class SrtRelay:
    """The edge's SRT port (a server.Listener)."""

    name = "srt"

    def __init__(
        self,
        edge: Edge,
        host: str,
        port: int,
        *,
        worker_srt_port: int,
        passphrases: PassphraseCache,
        limits: SrtLimits | None = None,
    ) -> None:
        if not edge.edge_token:
            # The workers open their leg port only with a token, and a leg's proof needs it.
            raise ValueError(
                f"the SRT relay needs the edge token ({forwarded.TOKEN_ENV}), as the workers do"
            )
        self.edge = edge
        self.host = host
        self.port = port
        self.worker_srt_port = worker_srt_port
        self.passphrases = passphrases
        self._limits = limits
        self.listener: SrtListener | None = None
        self._relays: dict[asyncio.Task[None], _Relay] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._reports: dict[int, _Report] = {}  # SRT socket → a report in flight
        self._caller_port = 0  # the local port every caller to a worker binds (bind_caller)
        self.reports = {"noted": 0, "failed": 0, "dropped": 0}

    @property
    def accepting(self) -> bool:
        return self.listener is not None and self.listener.accepting

    def connections(self) -> int:
        return 0 if self.listener is None else self.listener.publishers()

    def publishing(self) -> int:
        return len(self._relays)

    def stats(self) -> dict[str, int]:
        listener = {} if self.listener is None else self.listener.stats()
        relayed = sum(f.sent for r in self._relays.values() for f in r.feeds.values())
        reports = {f"reports_{outcome}": n for outcome, n in self.reports.items()}
        return (
            listener
            | self.passphrases.stats()
            | reports
            | {"relays": len(self._relays), "sent": relayed}
        )

    async def start(self) -> None:
        handler = _Handler(asyncio.get_running_loop(), self)
        self.listener = SrtListener(
            self.host, self.port, handler, limits=self._limits, lookup=self.passphrases.lookup,
            turn=LISTENER_TURN,
        )  # fmt: skip
        self.listener.start()
        self.port = self.listener.port
        self._ticker = asyncio.create_task(self._tick(), name="srt edge housekeeping")

    def adopt(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        publication = self.passphrases.lookup(key)
        if not isinstance(publication, Publication):  # evicted meanwhile: the camera retries
            sock.close()
            return
        sock.setblocking(False)
        self.edge.metrics.publishes.inc()
        relay = _Relay(self, key, peer, sock, publication)
        task = asyncio.create_task(relay.run(), name=f"srt edge {key}")
        self._relays[task] = relay
        task.add_done_callback(self._relays.pop)

    def bind_caller(self, sock: int) -> None:
        """Bind a refusal report's caller to the edge's one caller port, before its connect.

        libsrt gives every unbound caller its own UDP port and its own pair of
        threads and buffers (a "multiplexer"); callers bound to one address and
        port share one (SRTO_REUSEADDR, on by default), so a flood of reports
        costs no thread per report. When the port is gone (every caller closed,
        and another process took it) a new one is picked."""
        if self._caller_port:
            try:
                libsrt.bind(sock, self.host, self._caller_port)
                return
            except libsrt.SrtError:
                log.info("srt edge: caller port %d is gone; binding another", self._caller_port)
        libsrt.bind(sock, self.host, 0)
        self._caller_port = libsrt.bound_port(sock)

    def report(self, key: StreamKey, reason: str, peer: str) -> None:
        """Tell `key`'s owner that this edge refused the camera at `peer` for `reason`."""
        worker = next(iter(owners.owners(self.edge.ring(), key)), None)
        address = owners.address(self.edge.ring(), worker, self.worker_srt_port) if worker else None
        stream_id = vouch.report_id(key, self.edge.edge_token, peer, reason)
        if worker is None or address is None or stream_id is None or reason not in NOTED:
            # No owner now, or no edge token (the owner would believe nothing).
            log.info("[%s] srt edge: refused %s (%s), not reported", key, peer, reason)
            self.reports["failed"] += 1
            return
        if len(self._reports) >= MAX_REPORTS:
            self.reports["dropped"] += 1
            return
        sock = libsrt.create()
        try:
            libsrt.set_bool(sock, libsrt.SRTO_RCVSYN, False)  # the answer is read at a tick
            libsrt.set_string(sock, libsrt.SRTO_STREAMID, stream_id)
            self.bind_caller(sock)
            libsrt.connect(sock, *address)
        except libsrt.SrtError as exc:
            libsrt.close(sock)
            self.reports["failed"] += 1
            log.warning("[%s] srt edge: cannot report to worker %s: %s", key, worker, exc)
            return
        self._reports[sock] = _Report(key, worker, time.monotonic())

    def _reap_reports(self, now: float) -> None:
        """Close the reports the owners answered (or did not, in OPEN_TIMEOUT)."""
        for sock, report in list(self._reports.items()):
            state = libsrt.state(sock)
            if state < libsrt.SRTS_CONNECTED and now - report.opened <= OPEN_TIMEOUT:
                continue  # still calling
            noted = state >= libsrt.SRTS_BROKEN and libsrt.reject_reason(sock) == libsrt.REJX_NOTED
            if noted:
                self.reports["noted"] += 1
            else:  # refused otherwise (another token), no answer, or taken as a publisher
                self.reports["failed"] += 1
                log.warning(
                    "[%s] srt edge: worker %s did not take the refusal report", report.key,
                    report.worker,
                )  # fmt: skip
            del self._reports[sock]
            libsrt.close(sock)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            now = time.monotonic()
            self._reap_reports(now)
            for relay in list(self._relays.values()):
                try:
                    relay.housekeeping(now)
                except Exception:
                    log.exception("[%s] srt edge: housekeeping failed", relay.key)

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.listener.stop_accepting()

    async def idle(self) -> None:
        while self._relays:
            await asyncio.wait(list(self._relays))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.listener is not None:
            await asyncio.to_thread(self.listener.close)  # closes the publishers' sockets
        for sock in self._reports:
            libsrt.close(sock)
        self._reports.clear()
        tasks = list(self._relays)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
