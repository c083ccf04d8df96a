"""SRT through the ingest edge: one UDP port for all streams, relayed to the owning workers.

Real parts: the edge (`Edge` + `SrtRelay`, libsrt), the workers' own SRT
listener and TCP leg port (`SrtListener`, `EdgeLegPort`, the classes a worker
runs) on two loopback addresses,
or a whole standalone worker (`camstream run`) behind the edge where a test
reads the stream's status, Debian's FFmpeg as the camera, and libsrt callers
for the handshakes whose reject reason a test reads. The passphrase cache's
answers come from the same manifests a standalone worker reads (`fetch`
below); the API-server read (`passphrases.api_fetch`) is not exercised here.

Under the shared lock: these start processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import generate_latest

from camstream import ring
from camstream.handoff import Handoff, RingDoc
from camstream.spec import StreamKey
from camstream_worker.edge import tspackets
from camstream_worker.edge.passphrases import PassphraseCache
from camstream_worker.edge.server import Edge
from camstream_worker.edge.srt_relay import OPEN_TIMEOUT, SrtRelay
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.protocols.srt import edge_leg
from camstream_worker.servers.srt.edge_leg import EdgeLegPort
from camstream_worker.servers.srt.limits import SrtLimits
from camstream_worker.servers.srt.listener import Publication, SrtListener
from camstream_worker.srt import libsrt
from tests.harness.srt import LossyRelay, SrtCamera, udp_free_port
from tests.media.worker_process import camera_stream, secret
from tests.srt.test_srt_ingest import assert_plays

pytestmark = pytest.mark.media

PARTITIONS = 16
KEY = StreamKey("default", "gate")
PASSPHRASE = "gate-passphrase-0123"
TOKEN = "edge-token-0123456789abcdef"
STREAMS = {KEY: Publication(PASSPHRASE, 200)}
WORKER_A, WORKER_B = "127.0.0.2", "127.0.0.3"


@dataclass
class Delivered:
    key: StreamKey
    peer: str
    sock: socket.socket
    head: bytes = b""
    received: int = 0
    closed: bool = False


@dataclass
class Worker:
    """A worker's SRT listener (the real class) that records what it is handed."""

    host: str
    port: int
    token: str | None
    delivered: list[Delivered] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    listener: SrtListener | None = None
    leg: EdgeLegPort | None = None  # with a token: the edge's TCP legs, as a worker's service
    stale: list[StreamKey] = field(default_factory=list)

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        sock.setblocking(True)  # the leg port's sockets are non-blocking
        item = Delivered(key, peer, sock)
        self.delivered.append(item)
        threading.Thread(target=self._drain, args=(item,), daemon=True).start()

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        self.notes.append(reason)

    @staticmethod
    def _drain(item: Delivered) -> None:
        with item.sock:
            while data := item.sock.recv(65536):
                if len(item.head) < tspackets.PACKET:
                    item.head += data[: tspackets.PACKET]
                item.received += len(data)
        item.closed = True

    async def start(self, limits: SrtLimits | None = None) -> None:
        self.listener = SrtListener(self.host, self.port, self, edge_token=self.token)
        self.listener.publish(STREAMS)
        self.listener.start()
        if self.token:
            self.leg = EdgeLegPort(
                self.host, self.port, token=self.token, lookup=STREAMS.get,
                deliver=self.deliver, stale=self.stale.append, limits=limits,
            )  # fmt: skip
            await self.leg.start()

    async def close(self) -> None:
        if self.leg is not None:
            await self.leg.close()
        if self.listener is not None:
            await asyncio.to_thread(self.listener.close)


class Ring:
    def __init__(self) -> None:
        self.doc = self._doc("a")

    def _doc(self, serving: str, handoffs: tuple[Handoff, ...] = ()) -> RingDoc:
        return RingDoc(
            partitions=PARTITIONS, version=1, table=None, serving=(serving,) * PARTITIONS,
            handoffs=handoffs, addresses={"a": WORKER_A, "b": WORKER_B},
        )  # fmt: skip

    def handoff(self) -> None:
        partition = ring.partition_of(ring.stream_key(KEY.namespace, KEY.name), PARTITIONS)
        self.doc = self._doc("a", (Handoff(partition, "a", "b", id=3, started=time.time()),))

    def serve_b(self) -> None:
        self.doc = self._doc("b")


@dataclass
class Bed:
    edge: Edge
    relay: SrtRelay
    ring: Ring
    workers: dict[str, Worker]
    fetched: list[StreamKey]


@contextlib.asynccontextmanager
async def bed(worker_b_token: str | None = TOKEN) -> AsyncIterator[Bed]:
    port = udp_free_port(WORKER_A)
    workers = {"a": Worker(WORKER_A, port, TOKEN), "b": Worker(WORKER_B, port, worker_b_token)}
    for worker in workers.values():
        await worker.start()
    fetched: list[StreamKey] = []

    async def fetch(key: StreamKey) -> Publication | None:
        fetched.append(key)
        await asyncio.sleep(0.05)  # an API read takes a while; the callback must not wait
        return STREAMS.get(key)

    loop = asyncio.get_running_loop()
    the_ring = Ring()
    edge = Edge(ring=lambda: the_ring.doc, worker_rtmp_port=1, edge_token=TOKEN)
    cache = PassphraseCache(fetch, loop.call_soon_threadsafe)
    relay = SrtRelay(edge, "127.0.0.1", 0, worker_srt_port=port, passphrases=cache)
    edge.add_listener(relay)
    await relay.start()
    try:
        yield Bed(edge, relay, the_ring, workers, fetched)
    finally:
        await edge.close()
        for worker in workers.values():
            await worker.close()


def call(port: int, stream_id: str, passphrase: str) -> str | None:
    """One libsrt caller's handshake with the edge: None if accepted, else libsrt's reason."""
    sock = libsrt.create()
    try:
        libsrt.set_int(sock, libsrt.SRTO_CONNTIMEO, 3000)
        libsrt.set_string(sock, libsrt.SRTO_STREAMID, stream_id)
        libsrt.set_string(sock, libsrt.SRTO_PASSPHRASE, passphrase)
        libsrt.connect(sock, "127.0.0.1", port)
        return None
    except libsrt.SrtError as exc:
        return str(exc)
    finally:
        libsrt.close(sock)


def refused(relay: SrtRelay, reason: str) -> int:
    return relay.stats().get(f"refused_{reason}", 0)


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_cache_miss_is_refused_with_try_again_and_the_retry_is_accepted() -> None:
    async with bed() as b:
        port = b.relay.port
        first = await asyncio.to_thread(call, port, "default/gate", PASSPHRASE)
        assert first is not None and "1503" in first, first  # SRT_REJX_DOWN: try again
        assert refused(b.relay, "lookup") == 1
        await eventually(lambda: b.relay.passphrases.stats()["passphrases"] == 1)
        assert await asyncio.to_thread(call, port, "default/gate", PASSPHRASE) is None
        assert b.fetched == [KEY]  # one API read for both attempts
        b.edge.metrics.watch_srt(stats=b.relay.stats)
        exposed = generate_latest(b.edge.metrics.registry).decode()
        assert 'camstream_edge_srt_refused_total{reason="lookup"} 1.0' in exposed
        assert "camstream_edge_srt_passphrases 1.0" in exposed
        assert PASSPHRASE not in exposed


async def test_unknown_stream_and_wrong_passphrase_are_refused_alike() -> None:
    async with bed() as b:
        port = b.relay.port
        for stream_id in ("default/gate", "default/nosuch"):
            assert "1503" in (await asyncio.to_thread(call, port, stream_id, PASSPHRASE) or "")
        await eventually(lambda: len(b.fetched) == 2 and not b.relay.passphrases.stats()["lookups"])
        wrong = await asyncio.to_thread(call, port, "default/gate", "not-the-passphrase")
        unknown = await asyncio.to_thread(call, port, "default/nosuch", PASSPHRASE)
        assert wrong is not None and wrong == unknown, (wrong, unknown)
        assert PASSPHRASE not in wrong
        # The port sends both the same way: the key exchange fails; neither is accepted.
        await eventually(
            lambda: refused(b.relay, "unauthorized") + refused(b.relay, "stream_id") >= 2
        )


async def test_camera_is_relayed_to_its_owner_and_kept_through_a_handoff() -> None:
    """Each owner gets the camera over a TCP leg, with the camera's own address. During the
    handoff both owners are fed from a PAT; once the ring serves the target the source is
    dropped, and the camera never reconnects."""
    async with bed() as b:
        a, w_b = b.workers["a"], b.workers["b"]
        b.relay.passphrases.lookup(KEY)  # warm the cache as a camera's first try would
        await eventually(lambda: b.relay.passphrases.stats()["passphrases"] == 1)
        with SrtCamera(b.relay.port, stream_id="default/gate", passphrase=PASSPHRASE):
            await eventually(lambda: bool(a.delivered) and a.delivered[0].received > 50_000)
            (relay,) = b.relay._relays.values()
            camera = relay.peer
            assert a.delivered[0].peer == camera  # vouched: the camera's own host:port
            assert a.delivered[0].head[0] == tspackets.SYNC
            assert tspackets.pat_start(a.delivered[0].head) == 0  # fed from a PAT

            b.ring.handoff()
            await eventually(lambda: bool(w_b.delivered) and w_b.delivered[0].received > 50_000)
            assert w_b.delivered[0].peer == camera
            assert tspackets.pat_start(w_b.delivered[0].head) == 0
            assert not a.delivered[0].closed  # both fed: make-before-break

            b.ring.serve_b()
            await eventually(lambda: a.delivered[0].closed)
            fed = w_b.delivered[0].received
            await eventually(lambda: w_b.delivered[0].received > fed + 50_000)
            assert len(a.delivered) == len(w_b.delivered) == 1
            assert b.edge.metrics.publishes._value.get() == 1  # the camera never reconnected
            assert b.relay.publishing() == 1
            assert a.leg is not None and w_b.leg is not None
            assert a.leg.counts["accepted"] == w_b.leg.counts["accepted"] == 1
            assert a.listener is not None and a.listener.publishers() == 0  # TCP, not SRT


async def test_a_worker_with_another_token_refuses_the_leg_and_the_camera_stays() -> None:
    """The leg's proof needs the edge token: a handoff target with another token refuses
    every leg (the edge calls it again and again), feeds nothing, and the camera stays
    connected and fed to its serving owner."""
    async with bed(worker_b_token="another-token-0123456789") as b:
        a, w_b = b.workers["a"], b.workers["b"]
        b.relay.passphrases.lookup(KEY)
        await eventually(lambda: b.relay.passphrases.stats()["passphrases"] == 1)
        with SrtCamera(b.relay.port, stream_id="default/gate", passphrase=PASSPHRASE):
            await eventually(lambda: bool(a.delivered) and a.delivered[0].received > 50_000)
            b.ring.handoff()
            assert w_b.leg is not None
            await eventually(lambda: w_b.leg is not None and w_b.leg.counts["unauthorized"] >= 3)
            fed = a.delivered[0].received
            await eventually(lambda: a.delivered[0].received > fed + 50_000)
            assert not w_b.delivered and not a.delivered[0].closed
            assert b.edge.metrics.publishes._value.get() == 1
            assert w_b.stale  # a known stream whose proof failed: its passphrase is read again


async def test_a_leg_left_unanswered_is_closed_not_kept() -> None:
    """A worker that sends its challenge and never answers: the edge gives the leg up after
    OPEN_TIMEOUT and closes it (a late OK must not make a forgotten, silent leg the stream's
    newest publisher), then calls again."""
    port = udp_free_port(WORKER_A)
    requests: list[bytes] = []
    closed = asyncio.Event()

    async def mute_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(edge_leg.hello(bytes(16)))
        requests.append(await reader.readline())
        await reader.read()  # until the edge closes its end
        closed.set()

    server = await asyncio.start_server(mute_worker, WORKER_A, port)
    try:
        async with edge_to_one_worker(WORKER_A, port, STREAMS[KEY]) as (edge, relay):
            with SrtCamera(relay.port, stream_id="default/gate", passphrase=PASSPHRASE):
                await asyncio.wait_for(closed.wait(), OPEN_TIMEOUT + 5)
                assert requests[0].startswith(b"PUBLISH default/gate ")
                await eventually(lambda: len(requests) >= 2)  # and it calls again
                assert edge.metrics.publishes._value.get() == 1  # the camera stayed
    finally:
        server.close()


async def leg_call(port: int, line: bytes | None, *, host: str = WORKER_A) -> bytes:
    """One connection to a worker's leg port: its challenge, then `line` (or silence); what
    the worker answered before it closed."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hello = await reader.readline()
        assert hello.startswith(b"CAMSTREAM-TS/1 "), hello
        if line is not None:
            writer.write(line.replace(b"{nonce}", hello.split()[1]))
        return await asyncio.wait_for(reader.read(), 10)  # until the worker closes
    finally:
        writer.close()


async def test_the_leg_port_refuses_what_is_not_a_proven_leg() -> None:
    """Malformed lines, a wrong passphrase, an unknown stream and a replayed proof are
    refused with a reason, and nothing is delivered; silence is closed at the handshake
    timeout; beyond the cap of handshakes a connection is refused at once."""
    worker = Worker(WORKER_A, udp_free_port(WORKER_A), TOKEN)
    await worker.start(SrtLimits(max_connections=2, handshake_timeout=1.0))
    assert worker.leg is not None
    port = worker.leg.port
    camera = "10.1.2.3:5000"
    try:
        assert await leg_call(port, b"HELLO\n") == b"NO Malformed\n"
        assert await leg_call(port, b"x" * edge_leg.MAX_LINE) == b"NO Malformed\n"  # no newline
        unknown, wrong = StreamKey("default", "nosuch"), "not-the-passphrase"
        answers = []
        for key, passphrase in ((KEY, wrong), (unknown, PASSPHRASE)):
            answers.append(await proven_call(port, key, passphrase, camera))
        assert answers == [b"NO Unauthorized\n"] * 2  # alike: nobody learns which exist
        assert worker.stale == [KEY]  # only the known stream's passphrase is read again
        # A proof is good for its own challenge only.
        replayed = edge_leg.request(TOKEN, PASSPHRASE, bytes(16), KEY, camera)
        assert await leg_call(port, replayed) == b"NO Unauthorized\n"
        assert not worker.delivered

        started = time.monotonic()
        assert await leg_call(port, None) == b""  # silence: closed, no answer
        assert 0.8 < time.monotonic() - started < 5
        silent = [await asyncio.open_connection(WORKER_A, port) for _ in range(2)]
        await asyncio.sleep(0.2)
        reader, extra = await asyncio.open_connection(WORKER_A, port)
        assert await asyncio.wait_for(reader.read(), 5) == b"NO Capacity\n"
        extra.close()
        assert worker.leg.counts == {
            "accepted": 0, "malformed": 3, "unauthorized": 3, "capacity": 1,
        }, worker.leg.counts  # fmt: skip
        for _, writer in silent:
            writer.close()
        await asyncio.sleep(0.3)  # their handshakes end at the close

        assert await proven_call(port, KEY, PASSPHRASE, camera) == b"OK\n"
        await eventually(lambda: bool(worker.delivered))
        assert worker.delivered[0].peer == camera  # the camera's address, as the edge vouched
    finally:
        await worker.close()


async def proven_call(port: int, key: StreamKey, passphrase: str, camera: str) -> bytes:
    """A leg as the edge opens it (the token and `passphrase`): the worker's answer line."""
    reader, writer = await asyncio.open_connection(WORKER_A, port)
    try:
        nonce = edge_leg.nonce_of(await reader.readline())
        writer.write(edge_leg.request(TOKEN, passphrase, nonce, key, camera))
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def edge_to_one_worker(
    address: str, port: int, publication: Publication
) -> AsyncIterator[tuple[Edge, SrtRelay]]:
    """An edge whose ring names one worker at `address`:`port`, its passphrase cache already
    holding `publication` for KEY (as a camera's first try would fill it); closed at the end."""

    async def fetch(key: StreamKey) -> Publication | None:
        return publication if key == KEY else None

    doc = RingDoc(partitions=1, version=1, table=None, serving=("w",), addresses={"w": address})
    edge = Edge(ring=lambda: doc, worker_rtmp_port=1, edge_token=TOKEN)
    cache = PassphraseCache(fetch, asyncio.get_running_loop().call_soon_threadsafe)
    relay = SrtRelay(edge, "127.0.0.1", 0, worker_srt_port=port, passphrases=cache)
    edge.add_listener(relay)
    await relay.start()
    try:
        cache.lookup(KEY)
        await eventually(lambda: cache.stats()["passphrases"] == 1)
        yield edge, relay
    finally:
        await edge.close()


async def gate_worker(start_worker: Any, latency_ms: int | None = None) -> tuple[Any, int]:
    """A real standalone worker with the edge token running "gate" as an SRT push stream;
    with its SRT port (and the leg's, the same number over TCP)."""
    srt: dict[str, object] = {"passphraseSecretRef": {"name": "gate-srt"}}
    if latency_ms is not None:
        srt["latencyMs"] = latency_ms
    manifests = [
        camera_stream("gate", {"protocol": "srt", "srt": srt}, hls={"segmentSeconds": 1}),
        secret("gate-srt", passphrase=PASSPHRASE),
    ]
    port = udp_free_port()
    worker = await asyncio.to_thread(
        start_worker, manifests, 1, ("--srt-port", str(port)), {forwarded.TOKEN_ENV: TOKEN}
    )
    return worker, port


async def test_wrong_passphrase_at_the_edge_shows_on_the_stream_and_clears(start_worker) -> None:
    """The key exchange fails at the edge, which writes no status: it reports the refusal to
    the owner (a real standalone worker with the edge token), whose status shows the reason.
    A flood of wrong passphrases makes one report; the right passphrase afterwards goes live
    through the edge and the reason is gone."""
    worker, worker_port = await gate_worker(start_worker)

    async with edge_to_one_worker("127.0.0.1", worker_port, STREAMS[KEY]) as (edge, relay):
        wrong = "not-the-passphrase-1"
        camera = SrtCamera(relay.port, stream_id="default/gate", passphrase=wrong)
        await asyncio.to_thread(camera.run_once)
        status = await asyncio.to_thread(
            worker.wait_for, "gate", phase="Connecting", reason="WrongPassphrase", timeout=10
        )
        assert status["message"] == (
            "refused a publisher: wrong or missing passphrase (last from 127.0.0.1)"
        )
        await eventually(lambda: relay.stats()["reports_noted"] == 1)

        # A flood, all within NOTE_INTERVAL (30 s) of the first: each refused, one report.
        for _ in range(5):
            assert await asyncio.to_thread(call, relay.port, "default/gate", wrong) is not None
        await eventually(lambda: refused(relay, "unauthorized") >= 6)
        await asyncio.sleep(2 * 0.25)  # two of the listeners' housekeeping ticks
        assert relay.stats()["reports_noted"] == 1, relay.stats()
        assert relay.stats()["reports_failed"] == relay.stats()["reports_dropped"] == 0
        edge.metrics.watch_srt(stats=relay.stats)
        exposed = generate_latest(edge.metrics.registry).decode()
        assert 'camstream_edge_srt_refusal_reports_total{outcome="noted"} 1.0' in exposed

        with SrtCamera(relay.port, stream_id="default/gate", passphrase=PASSPHRASE):
            live = await asyncio.to_thread(worker.wait_for, "gate", phase="Live", timeout=30)
        assert live["reason"] != "WrongPassphrase" and "passphrase" not in live["message"]
        log = worker.log()
        assert wrong not in log and PASSPHRASE not in log
        assert wrong not in str(worker.streams()) and PASSPHRASE not in str(worker.streams())
        assert "the edge at 127.0.0.1" in log  # the owner says where the report came from


async def test_loss_before_the_edge_is_recovered_by_srt(start_worker) -> None:
    """The edge's listener rests between reads (LISTENER_TURN) and sizes each camera's
    buffers for its latency (limits.buffer_packets): 5 % of the camera's datagrams lost on
    the way to the edge are still recovered by SRT there, and the worker behind it plays
    one unbroken session."""
    worker, worker_port = await gate_worker(start_worker, latency_ms=500)

    async with edge_to_one_worker("127.0.0.1", worker_port, Publication(PASSPHRASE, 500)) as (
        edge,
        relay,
    ):
        with LossyRelay(relay.port, loss=0.05) as lossy:
            camera = SrtCamera(
                lossy.port, stream_id="default/gate", passphrase=PASSPHRASE, latency_ms=500
            )
            with camera:
                await asyncio.to_thread(worker.wait_for, "gate", phase="Live", timeout=40)
                await asyncio.to_thread(worker.wait_segments, "gate", 8, timeout=40)
                assert worker.playlist("gate").discontinuity_positions == ()  # one session
                assert worker.stream("gate")["reconnects"] == 0
                await asyncio.to_thread(assert_plays, worker, "gate", 6)
            assert lossy.dropped > 50, (lossy.dropped, lossy.forwarded)
            assert lossy.dropped / (lossy.dropped + lossy.forwarded) > 0.03
        assert edge.metrics.publishes._value.get() == 1  # the camera never reconnected


async def test_a_leg_that_goes_silent_is_ended_by_the_worker(start_worker) -> None:
    """An edge whose host vanished leaves a leg open and silent (no FIN): a real standalone
    worker's source ends it after PUBLISHER_IDLE (10 s), as the SRT listener ends a silent
    publisher, instead of waiting on it for ever."""
    worker, worker_port = await gate_worker(start_worker)
    deadline = time.monotonic() + 10
    while True:  # the service's table takes the stream within a refresh
        reader, writer = await asyncio.open_connection("127.0.0.1", worker_port)
        nonce = edge_leg.nonce_of(await reader.readline())
        writer.write(edge_leg.request(TOKEN, PASSPHRASE, nonce, KEY, "10.1.2.3:5000"))
        if await reader.readline() == b"OK\n":
            break
        writer.close()
        assert time.monotonic() < deadline, "the worker never took the leg"
        await asyncio.sleep(0.2)
    try:
        opened = time.monotonic()
        ended = "srt publisher sent nothing for 10 s: ended"
        await eventually(lambda: ended in worker.log(), within=25)
        assert time.monotonic() - opened >= 9.5
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the worker closed its end
    finally:
        writer.close()
