"""The ingest edge holds a pushed camera through worker changes (edge/, #15).

Real loopback sockets and real RTMP on both sides: the camera is the
scripted RTMP publisher of the bad-input suite (tests/harness/rtmp_client.py,
blocking, so it runs in a thread), the workers are the worker's own RTMP
server (servers/rtmp/listener.py) on 127.0.0.2 and 127.0.0.3 with the same
port, as pods share theirs, each with a sink that records what it got. The
ring document is written by the test, as the operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from camstream import ring
from camstream.handoff import Handoff, RingDoc
from camstream.spec import StreamKey
from camstream_worker.edge import owners
from camstream_worker.edge.server import Edge, RtmpListener
from camstream_worker.protocols.rtmp import forwarded, paths
from camstream_worker.protocols.rtmp.flv import MediaPacket, TrackConfig
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.rtmp.listener import RtmpServer
from tests.harness.rtmp_client import AUDIO, VIDEO, RtmpClient

KEY = StreamKey("ns", "cam")
SECRET = "s3cret-key"
PARTITIONS = 8
AVC_CONFIG = (
    bytes([0x17, 0, 0, 0, 0]) + b"\x01\x64\x00\x1f\xff\xe1\x00\x04gd\x00\x1f\x01\x00\x02h\xee"
)
AAC_CONFIG = bytes([0xAF, 0]) + b"\x12\x10"


def keyframe(n: int) -> bytes:
    return bytes([0x17, 1, 0, 0, 0]) + n.to_bytes(4, "big") + b"K"


def frame(n: int) -> bytes:
    return bytes([0x27, 1, 0, 0, 0]) + n.to_bytes(4, "big") + b"P"


@dataclass
class Sink:
    configs: list[TrackConfig] = field(default_factory=list)
    packets: list[MediaPacket] = field(default_factory=list)
    closed: list[str | None] = field(default_factory=list)

    def on_config(self, config: TrackConfig) -> None:
        self.configs.append(config)

    def on_packet(self, packet: MediaPacket) -> None:
        self.packets.append(packet)

    def on_metadata(self, metadata: dict[str, object]) -> None:
        pass

    def on_close(self, reason: str | None) -> None:
        self.closed.append(reason)


@dataclass
class Worker:
    name: str
    ip: str
    server: RtmpServer
    sinks: list[Sink] = field(default_factory=list)
    refuse: bool = False

    @property
    def sink(self) -> Sink:
        return self.sinks[-1]


def make_worker(name: str, ip: str, port: int, **server: object) -> Worker:
    worker: Worker

    def authorize(app: str, stream_name: str, peer: str) -> Sink | None:
        if worker.refuse or paths.publish_target(app, stream_name) != (KEY, SECRET):
            return None
        worker.sinks.append(Sink())
        return worker.sinks[-1]

    settings = {"read_batch_seconds": 0, **server}
    worker = Worker(name, ip, RtmpServer(authorize, ip, port, **settings))  # type: ignore[arg-type]
    return worker


class Ring:
    def __init__(self, serving: str, addresses: dict[str, str]) -> None:
        self.doc = RingDoc(
            partitions=PARTITIONS,
            version=1,
            table=None,
            serving=(serving,) * PARTITIONS,
            addresses=addresses,
        )

    def serve(self, owner: str, handoff_to: str | None = None) -> None:
        handoffs: tuple[Handoff, ...] = ()
        if handoff_to is not None:
            handoffs = (Handoff(self.partition, owner, handoff_to, id=7, started=time.time()),)
        self.doc = RingDoc(
            partitions=PARTITIONS,
            version=self.doc.version + 1,
            table=None,
            serving=(owner,) * PARTITIONS,
            handoffs=handoffs,
            addresses=self.doc.addresses,
        )

    @property
    def partition(self) -> int:
        return ring.partition_of(ring.stream_key(KEY.namespace, KEY.name), PARTITIONS)


@contextlib.asynccontextmanager
async def bed(
    token: str = "", edge_limits: dict[str, float] | None = None, **limits: float
) -> AsyncIterator[tuple[Edge, int, Worker, Worker, Ring]]:
    """An edge on 127.0.0.1 and two workers, a (serving) and b, on one port.

    `token`: the edge token both sides share ("": none); `limits` apply to all
    three, `edge_limits` to the edge only.
    """
    a = make_worker("a", "127.0.0.2", 0, edge_token=token, **limits)
    await a.server.start()
    b = make_worker("b", "127.0.0.3", a.server.port, edge_token=token, **limits)
    await b.server.start()
    the_ring = Ring("a", {"a": a.ip, "b": b.ip})
    edge = Edge(
        ring=lambda: the_ring.doc,
        worker_rtmp_port=a.server.port,
        limits=Limits().replace(**{"read_batch_seconds": 0.0, **limits, **(edge_limits or {})}),
        edge_token=token,
    )
    listener = RtmpListener(edge, "127.0.0.1", 0)
    edge.add_listener(listener)
    await edge.start()
    try:
        yield edge, listener.port, a, b, the_ring
    finally:
        await edge.close()
        await a.server.close()
        await b.server.close()


def camera(port: int, source: str = "127.0.0.1") -> RtmpClient:
    client = RtmpClient(port, source=source)
    client.handshake()
    client.set_chunk_size(4096)
    return client


def push(client: RtmpClient, start: int, count: int, *, gop: int = 5) -> None:
    """`count` frames from frame `start`, a keyframe every `gop`, with audio between,
    10 ms apart (a camera's pace, sped up fourfold)."""
    for n in range(start, start + count):
        time.sleep(0.01)
        ts = n * 40
        client.tag(VIDEO, ts, keyframe(n) if n % gop == 0 else frame(n))
        client.tag(AUDIO, ts, bytes([0xAF, 1]) + b"aac")


async def until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.02)


def videos(sink: Sink) -> list[MediaPacket]:
    return [p for p in sink.packets if p.kind == "video"]


async def start_camera(port: int, source: str = "127.0.0.1") -> RtmpClient:
    client = await asyncio.to_thread(camera, port, source)
    status = await asyncio.to_thread(client.publish, "ns/cam", SECRET)
    assert status == "NetStream.Publish.Start"
    await asyncio.to_thread(client.tag, VIDEO, 0, AVC_CONFIG)
    await asyncio.to_thread(client.tag, AUDIO, 0, AAC_CONFIG)
    return client


async def test_owners_follow_the_serving_table_and_a_starting_handoff() -> None:
    the_ring = Ring("a", {"a": "10.0.0.1"})
    assert owners.owners(the_ring.doc, KEY) == ("a",)
    the_ring.serve("a", handoff_to="b")
    assert owners.owners(the_ring.doc, KEY) == ("a", "b")
    assert owners.address(the_ring.doc, "a", 1935) == ("10.0.0.1", 1935)
    assert owners.address(the_ring.doc, "b", 1935) is None  # not up: no address yet
    assert owners.owners(None, KEY) == ()


@pytest.mark.parametrize("batch", [0.0, 0.03], ids=["each read", "batched reads"])
async def test_the_camera_stays_when_its_owner_dies_and_the_new_owner_starts_at_a_keyframe(
    batch: float,
) -> None:
    # Batched: the edge reads each camera once per tick of its shared timer.
    async with bed(read_batch_seconds=batch) as (edge, port, a, b, the_ring):
        client = await start_camera(port)
        try:
            await asyncio.to_thread(push, client, 0, 12)
            await until(lambda: a.sinks and len(videos(a.sink)) == 12)
            assert [c.kind for c in a.sink.configs] == ["video", "audio"]
            # The owner dies; the ring names b.
            await a.server.close()
            the_ring.serve("b")
            await asyncio.sleep(0.1)
            await asyncio.to_thread(push, client, 12, 20)
            await until(lambda: b.sinks and len(videos(b.sink)) >= 5)
            got = videos(b.sink)
            # b got the sequence headers the camera sent once, long before,
            # and media from the next keyframe on: never a frame it cannot decode.
            assert [c.kind for c in b.sink.configs] == ["video", "audio"]
            assert got[0].keyframe, got[0]
            assert not await asyncio.to_thread(client.closed_within, 0.2)  # camera still there
            assert edge.metrics.publishes._value.get() == 1
            assert edge.metrics.owner_lost._value.get() == 1
            assert edge.metrics.owner_connects._value.get() == 1
        finally:
            client.close()


async def test_a_handoff_feeds_both_owners_until_the_ring_serves_the_target() -> None:
    async with bed() as (edge, port, a, b, the_ring):
        client = await start_camera(port)
        try:
            await asyncio.to_thread(push, client, 0, 5)
            await until(lambda: a.sinks and len(videos(a.sink)) == 5)
            the_ring.serve("a", handoff_to="b")
            await asyncio.to_thread(push, client, 5, 1)  # a read: the session looks at the ring
            await until(lambda: bool(b.sinks))
            await asyncio.to_thread(push, client, 6, 14)
            await until(lambda: len(videos(a.sink)) == 20 and len(videos(b.sink)) >= 10)
            assert videos(b.sink)[0].keyframe
            assert not a.sink.closed  # make before break: a still has it
            assert edge.metrics.handoffs_forked._value.get() == 1
            # The target confirmed; the ring serves the stream from b: a is dropped.
            the_ring.serve("b")
            await asyncio.to_thread(push, client, 20, 5)
            await until(lambda: bool(a.sink.closed))
            before = len(videos(a.sink))
            await asyncio.to_thread(push, client, 25, 5)
            await until(lambda: videos(b.sink)[-1].dts_ms == 29 * 40)
            assert len(videos(a.sink)) == before
            assert not await asyncio.to_thread(client.closed_within, 0.2)
        finally:
            client.close()


async def test_a_target_that_refused_the_fork_is_called_again_without_a_key_pause() -> None:
    """A handoff's target refuses the edge's fork until its own ring has the
    handoff; the edge calls again 0.5 s on (REFUSED_RETRY). The worker's key
    gate must not hold that call for its pause: the edge checked the camera's
    key at its own gate (before: the fork waited 2 s, #15)."""
    async with bed(TOKEN, key_failure_pause=3.0) as (_edge, port, a, b, the_ring):
        client = await start_camera(port)
        try:
            await asyncio.to_thread(push, client, 0, 5)
            await until(lambda: a.sinks and len(videos(a.sink)) == 5)
            b.refuse = True
            the_ring.serve("a", handoff_to="b")
            frames = 5
            while not b.server.refusals.counts.get("unauthorized"):
                await asyncio.to_thread(push, client, frames, 1)  # reads: the edge calls b
                frames += 1
                assert frames < 500, "the edge never called the target"
            b.refuse = False
            started = time.monotonic()
            while not b.sinks:
                await asyncio.to_thread(push, client, frames, 1)
                frames += 1
                assert time.monotonic() - started < 5.0, "the target was never called again"
            assert time.monotonic() - started < 1.5  # 0.5 s between calls, not a 3 s pause
        finally:
            client.close()


async def test_a_key_the_owner_refuses_is_refused_to_the_camera_and_paused() -> None:
    async with bed(key_failure_pause=1.0) as (edge, port, a, _b, _ring):
        client = await asyncio.to_thread(camera, port)
        with client:
            status = await asyncio.to_thread(client.publish, "ns/cam", "wrong")
            assert status == "NetStream.Publish.BadName"
            assert await asyncio.to_thread(client.closed_within, 2.0)
        assert edge.refusals.counts["unauthorized"] == 1
        assert not a.sinks
        # The same address's next check waits for the pause, as at a worker.
        started = time.monotonic()
        client = await start_camera(port)
        client.close()
        assert time.monotonic() - started >= 0.9


async def test_no_secret_in_what_the_edge_logs(caplog: object) -> None:
    import logging

    caplog.set_level(logging.DEBUG)  # type: ignore[attr-defined]
    async with bed() as (_edge, port, a, _b, the_ring):
        client = await start_camera(port)
        await asyncio.to_thread(push, client, 0, 5)
        await a.server.close()
        the_ring.serve("b")
        await asyncio.to_thread(push, client, 5, 10)
        await asyncio.sleep(0.3)
        client.close()
        await asyncio.sleep(0.1)
    assert SECRET not in caplog.text  # type: ignore[attr-defined]


async def test_drain_stops_accepting_keeps_live_cameras_then_closes_them() -> None:
    async with bed() as (edge, port, _a, _b, _ring):
        client = await start_camera(port)
        assert edge.ready
        drain = asyncio.create_task(edge.drain(0.6))
        await asyncio.sleep(0.1)
        assert not edge.ready
        # No new camera gets in; the live one is still up.
        refused = await asyncio.to_thread(_cannot_connect, port)
        assert refused
        assert not await asyncio.to_thread(client.closed_within, 0.2)
        started = time.monotonic()
        await drain
        assert await asyncio.to_thread(client.closed_within, 1.0)
        assert time.monotonic() - started <= 0.8
        client.close()


def _cannot_connect(port: int) -> bool:
    try:
        RtmpClient(port, timeout=1.0).close()
    except OSError:
        return True
    return False


TOKEN = "t" * 32


async def _second_camera_wait(token: str) -> float:
    """Seconds a right key from one address waits after a wrong one from another."""
    async with bed(token, key_failure_pause=1.0) as (_edge, port, a, _b, _ring):
        bad = await asyncio.to_thread(camera, port, "127.0.0.5")
        with bad:
            status = await asyncio.to_thread(bad.publish, "ns/cam", "wrong")
            assert status == "NetStream.Publish.BadName"
        assert a.server.refusals.counts["unauthorized"] == 1
        started = time.monotonic()
        good = await start_camera(port, "127.0.0.6")
        good.close()
        return time.monotonic() - started


async def test_with_the_edge_token_a_wrong_key_pauses_only_its_own_address_at_the_worker() -> None:
    # The edge vouches for each camera's address (protocols/rtmp/forwarded.py):
    # the worker's key gate pauses the guesser, not every camera of the edge.
    assert await _second_camera_wait(TOKEN) < 0.5
    # Without the token, the worker counts every camera as the edge's address.
    assert await _second_camera_wait("") >= 0.9


def test_the_worker_believes_only_the_edge_token() -> None:
    props = {**forwarded.connect_props(TOKEN, "203.0.113.7"), "app": "ns/cam"}
    assert forwarded.vouched_client(props, TOKEN) == "203.0.113.7"
    assert forwarded.vouched_client(props, None) is None  # no token here: believe nothing
    assert forwarded.vouched_client(props, "u" * 32) is None  # another edge's token
    assert forwarded.vouched_client({**props, "camstreamClient": "me"}, TOKEN) is None
    assert forwarded.connect_props(None, "203.0.113.7") == {}
    assert forwarded.token_from_env({}) is None
    with pytest.raises(ValueError) as caught:
        forwarded.token_from_env({forwarded.TOKEN_ENV: "short"})
    assert "short" not in str(caught.value).replace("shorter", "")  # never the value


@contextlib.asynccontextmanager
async def deaf_owner() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A worker that accepts the edge's publish and then never reads again.

    Scripted with camstream's own RTMP pieces on a real loopback socket: the
    server handshake, the answers to connect, createStream and publish; then
    it stops reading, so the kernel's buffers fill and the edge's queue grows.
    """
    from camstream_worker.protocols.rtmp import chunks, handshake, messages

    published = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        shake = handshake.ServerHandshake()
        while not shake.done:
            writer.write(shake.feed(await reader.read(65536)))
        decoder = chunks.ChunkDecoder()
        pending = decoder.feed(shake.rest)
        while not published.is_set():
            for message in pending:
                if message.type_id != messages.AMF0_COMMAND:
                    continue
                values = messages.command_values(message)
                if values[0] == "createStream":
                    writer.write(messages.command(0, ["_result", values[1], None, 1.0], 128))
                elif values[0] == "publish":
                    start = messages.on_status(1, "status", "NetStream.Publish.Start", "", 128)
                    writer.write(start)
                    published.set()
            if not published.is_set():
                pending = decoder.feed(await reader.read(65536))
        await asyncio.sleep(3600)  # deaf from here on

    server = await asyncio.start_server(serve, "127.0.0.4", 0)
    try:
        yield server.sockets[0].getsockname()[1], published
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()


async def test_a_worker_that_does_not_read_costs_the_edge_at_most_max_buffer() -> None:
    from camstream_worker.edge import upstream

    async with deaf_owner() as (port, published):
        doc = RingDoc(
            partitions=PARTITIONS, version=1, table=None,
            serving=("deaf",) * PARTITIONS, addresses={"deaf": "127.0.0.4"},
        )  # fmt: skip
        edge = Edge(ring=lambda: doc, worker_rtmp_port=port, limits=Limits())
        listener = RtmpListener(edge, "127.0.0.1", 0)
        edge.add_listener(listener)
        await edge.start()
        client = await start_camera(listener.port)
        try:
            await asyncio.wait_for(published.wait(), 5)
            # 1 MB keyframes every 5 frames: 12 MB in all, 3x the bound.
            big = bytes([0x17, 1, 0, 0, 0]) + bytes(1024 * 1024)

            def flood() -> None:
                for n in range(60):
                    client.tag(VIDEO, n * 40, big if n % 5 == 0 else frame(n))

            await asyncio.to_thread(flood)
            await until(lambda: edge.metrics.overflows._value.get() >= 1)
            (session,) = listener._sessions.values()
            ups = list(session._upstreams.values())
            assert ups and all(up.buffered() <= upstream.MAX_BUFFER for up in ups)
            # The camera is not dropped for its worker's fault.
            assert not await asyncio.to_thread(client.closed_within, 0.2)
        finally:
            client.close()
            await edge.close()


async def test_a_camera_no_worker_takes_is_closed_after_the_orphan_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from camstream_worker.edge import session

    monkeypatch.setattr(session, "ORPHAN_TIMEOUT", 0.5)
    async with bed() as (edge, port, a, _b, the_ring):
        client = await start_camera(port)
        try:
            await a.server.close()
            the_ring.serve("")  # nobody serves the partition (no worker up)
            started = time.monotonic()

            def push_until_closed() -> bool:
                for n in range(200):
                    try:
                        push(client, n, 1)
                    except OSError:
                        return True
                    if client.closed_within(0.0):
                        return True
                return False

            assert await asyncio.to_thread(push_until_closed)
            assert time.monotonic() - started < 3.0
            assert edge.refusals.counts["capacity"] == 1
        finally:
            client.close()


AGGREGATE = 22


def aggregate(*tags: tuple[int, int, bytes]) -> bytes:
    """An RTMP aggregate message's payload: FLV tags (type, timestamp, body), each
    with its 11-byte header and trailing PreviousTagSize, as FMS and Wowza send them."""
    out = b""
    for kind, ts, body in tags:
        head = bytes([kind]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        out += head + bytes([ts >> 24]) + bytes(3) + body + (11 + len(body)).to_bytes(4, "big")
    return out


def push_aggregates(client: RtmpClient, start: int, count: int, *, gop: int = 5) -> None:
    """`push`, but each frame and its audio in one aggregate message (type 22)."""
    for n in range(start, start + count):
        time.sleep(0.01)
        ts = n * 40
        video = keyframe(n) if n % gop == 0 else frame(n)
        tags = ((VIDEO, ts, video), (AUDIO, ts, bytes([0xAF, 1]) + b"aac"))
        client.send(6, AGGREGATE, 1, ts, aggregate(*tags))


async def test_aggregate_messages_carry_keyframes_and_sequence_headers_to_a_new_owner() -> None:
    # The edge looks into aggregates: a camera that sends everything in them
    # still gets a new owner started at a keyframe, with the sequence headers
    # it sent once, inside an aggregate too.
    async with bed() as (_edge, port, a, b, the_ring):
        client = await asyncio.to_thread(camera, port)
        try:
            status = await asyncio.to_thread(client.publish, "ns/cam", SECRET)
            assert status == "NetStream.Publish.Start"
            configs = aggregate((VIDEO, 0, AVC_CONFIG), (AUDIO, 0, AAC_CONFIG))
            await asyncio.to_thread(client.send, 6, AGGREGATE, 1, 0, configs)
            await asyncio.to_thread(push_aggregates, client, 0, 7)
            await until(lambda: a.sinks and len(videos(a.sink)) == 7)
            assert [c.kind for c in a.sink.configs] == ["video", "audio"]
            await a.server.close()
            the_ring.serve("b")
            await asyncio.sleep(0.1)
            await asyncio.to_thread(push_aggregates, client, 7, 20)
            await until(lambda: b.sinks and len(videos(b.sink)) >= 5)
            assert [c.kind for c in b.sink.configs] == ["video", "audio"]
            got = videos(b.sink)
            assert got[0].keyframe, got[0]
            assert not await asyncio.to_thread(client.closed_within, 0.2)
        finally:
            client.close()


async def test_a_malformed_aggregate_closes_the_camera_with_a_protocol_refusal() -> None:
    async with bed() as (edge, port, a, _b, _ring):
        client = await start_camera(port)
        try:
            await asyncio.to_thread(push, client, 0, 5)
            await until(lambda: a.sinks and len(videos(a.sink)) == 5)
            whole = aggregate((VIDEO, 200, keyframe(5)))
            await asyncio.to_thread(client.send, 6, AGGREGATE, 1, 200, whole[:-8])  # cut short
            assert await asyncio.to_thread(client.closed_within, 2.0)
            assert edge.refusals.counts["protocol"] == 1
            assert len(videos(a.sink)) == 5  # nothing of it reached the owner
        finally:
            client.close()


async def test_a_camera_faster_than_one_buffer_per_batch_is_read_at_its_pace() -> None:
    # A read that fills the edge's buffer (READ_SIZE) is followed by another at
    # once: a batch pause caps no camera's rate. Here 0.5 s batches and 4 MB of
    # frames (16 buffers' worth): held to one buffer per batch this took ~8 s.
    from camstream_worker.edge.session import READ_SIZE

    size = 64 * 1024
    count = 16 * READ_SIZE // size
    async with bed(edge_limits={"read_batch_seconds": 0.5}) as (_edge, port, a, _b, _ring):
        client = await start_camera(port)
        try:
            started = time.monotonic()

            def burst() -> None:
                for n in range(count):
                    body = (keyframe(n) if n % 5 == 0 else frame(n)) + bytes(size)
                    client.tag(VIDEO, n * 40, body)

            await asyncio.to_thread(burst)
            await until(lambda: a.sinks and len(videos(a.sink)) == count, within=10.0)
            assert time.monotonic() - started < 3.0
        finally:
            client.close()
