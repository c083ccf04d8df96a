"""The RTMP ingest server against real FFmpeg publishers on loopback.

Scenarios: one live H.264+AAC publisher (configs, keyframe cadence, timestamps,
frames that really decode); ten at once; a wrong key refused while a good
publisher keeps going; garbage, bad versions, half handshakes, oversized
messages and a crashing sink on the same port while a good publisher keeps
going; a video-only publisher; a second publisher for a live stream replacing
the first; the connection cap; and how many socket reads the batching saves.

Each test starts its own server on 127.0.0.1:0 with a collecting sink; every
FFmpeg started here is killed (by its own handle) in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from camstream_worker.protocols.rtmp import amf0
from camstream_worker.protocols.rtmp.chunks import ChunkDecoder, RtmpMessage, encode_message
from camstream_worker.protocols.rtmp.flv import MediaPacket, TrackConfig
from camstream_worker.servers.rtmp.listener import RtmpServer

pytestmark = [pytest.mark.media, pytest.mark.timeout(120)]

GOOD_KEY = "g00d-k3y-4f9a2c"
OTHER_KEY = "0th3r-k3y-77b1d0"
WRONG_KEY = "wr0ng-k3y-d3adbeef"
CLIP_SECONDS = 4


@dataclass
class CollectingSink:
    """Records everything the server hands over, with arrival times."""

    name: str
    configs: list[TrackConfig] = field(default_factory=list)
    packets: list[MediaPacket] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    metadata: list[dict[str, object]] = field(default_factory=list)
    closed: list[str | None] = field(default_factory=list)

    def on_config(self, config: TrackConfig) -> None:
        self.configs.append(config)

    def on_packet(self, packet: MediaPacket) -> None:
        self.packets.append(packet)
        self.arrivals.append(time.monotonic())

    def on_metadata(self, metadata: dict[str, object]) -> None:
        self.metadata.append(metadata)

    def on_close(self, reason: str | None) -> None:
        self.closed.append(reason)

    def of(self, kind: str) -> list[MediaPacket]:
        return [p for p in self.packets if p.kind == kind]


class ExplodingSink(CollectingSink):
    def on_packet(self, packet: MediaPacket) -> None:
        raise RuntimeError("pipeline bug")


@dataclass
class Keys:
    """The authorizer: stream keys it knows, and the sinks it handed out."""

    allowed: dict[str, type[CollectingSink]]
    sinks: list[CollectingSink] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, app: str, stream_name: str, peer: str) -> CollectingSink | None:
        assert peer.startswith("127.0.0.1:")
        self.asked.append((app, stream_name))
        await asyncio.sleep(0)  # an async authorizer, as a real lookup would be
        factory = self.allowed.get(stream_name) if app == "live" else None
        if factory is None:
            return None
        sink = factory(stream_name)
        self.sinks.append(sink)
        return sink

    def sink(self, key: str) -> CollectingSink:
        return next(s for s in reversed(self.sinks) if s.name == key)


@contextlib.asynccontextmanager
async def rtmp_server(keys: Callable[..., object], **options: float) -> AsyncIterator[RtmpServer]:
    server = RtmpServer(keys, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def ffmpeg(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """An FFmpeg process of ours, killed by its own handle on the way out."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


def push_clip(
    clip: Path, port: int, key: str, *extra: str
) -> contextlib.AbstractAsyncContextManager:
    """Publish the pre-encoded clip at real time, without re-encoding (cheap)."""
    return ffmpeg(
        "-re",
        *extra,
        "-i",
        str(clip),
        "-c",
        "copy",
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/{key}",
    )


async def finish(proc: asyncio.subprocess.Process, within: float = 30.0) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def until(
    condition: Callable[[], bool], within: float = 15.0, what: str = "condition"
) -> None:
    """Poll rather than sleep: the machine is shared and slow at times."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s H.264 (2 s GOP) + AAC FLV clip, encoded once."""
    path = tmp_path_factory.mktemp("rtmp") / "clip.flv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac",
         "-t", str(CLIP_SECONDS), "-f", "flv", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def assert_complete_stream(sink: CollectingSink, *, audio: bool = True) -> None:
    """What any full 4 s, 25 fps, 2 s GOP publish must have delivered."""
    kinds = {c.kind: c for c in sink.configs}
    video = sink.of("video")
    assert kinds["video"].codec == "h264" and kinds["video"].extradata[0] == 1  # avcC version 1
    assert 0.95 * 25 * CLIP_SECONDS <= len(video) <= 25 * CLIP_SECONDS + 2
    dts = [p.dts_ms for p in video]
    assert dts == sorted(dts) and len(set(dts)) == len(dts), "video dts must increase"
    assert all(p.pts_ms >= p.dts_ms for p in video)
    keyframes = [p.dts_ms for p in video if p.keyframe]
    assert keyframes[0] == video[0].dts_ms
    assert [b - a for a, b in itertools.pairwise(keyframes)] == [2000] * (len(keyframes) - 1)
    assert len(keyframes) == CLIP_SECONDS // 2
    for packet in video[:5]:  # AVCC: 4-byte big-endian NALU lengths that add up
        pos = 0
        while pos < len(packet.data):
            pos += 4 + struct.unpack_from(">I", packet.data, pos)[0]
        assert pos == len(packet.data)
    if audio:
        assert kinds["audio"] == TrackConfig(
            "audio", "aac", kinds["audio"].extradata, sample_rate=44100, channels=1
        )
        sound = sink.of("audio")
        expected = 44100 * CLIP_SECONDS / 1024
        assert 0.9 * expected <= len(sound) <= expected + 5
        adts = [p.dts_ms for p in sound]
        assert adts == sorted(adts)
    else:
        assert "audio" not in kinds and not sink.of("audio")


async def test_ffmpeg_live_publish_delivers_decodable_h264_and_aac() -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        async with ffmpeg(
            "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac",
            "-t", str(CLIP_SECONDS),
            "-f", "flv", f"rtmp://127.0.0.1:{server.port}/live/{GOOD_KEY}",
        ) as proc:  # fmt: skip
            code, err = await finish(proc)
        assert code == 0, err
        sink = keys.sink(GOOD_KEY)
        await until(lambda: bool(sink.closed), what="clean close")
        assert sink.closed == [None]
        assert keys.asked == [("live", GOOD_KEY)]
        assert_complete_stream(sink)
        assert sink.metadata and sink.metadata[0]["width"] == 320.0
        # The sink hears the close before the listener's books do: on a busy
        # machine the connection count drops a moment later.
        await until(lambda: server.stats()["connections"] == 0, what="the connection counted out")
        stats = server.stats()
        assert stats["publishes_total"] == 1 and stats["refused_protocol"] == 0
        assert stats["connections"] == 0 and stats["publishers"] == 0

    # The packets are real H.264: PyAV decodes them with the avcC as extradata.
    video_config = next(c for c in sink.configs if c.kind == "video")
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = video_config.extradata
    frames = []
    for packet in sink.of("video")[:25]:
        frames += decoder.decode(av.Packet(packet.data))
    assert frames and (frames[0].width, frames[0].height) == (320, 240)


async def test_ten_concurrent_publishers(clip: Path) -> None:
    names = [f"cam{i}-{GOOD_KEY}" for i in range(10)]
    keys = Keys({name: CollectingSink for name in names})
    async with rtmp_server(keys) as server, contextlib.AsyncExitStack() as stack:
        cpu0, wall0 = time.process_time(), time.monotonic()
        procs = [
            await stack.enter_async_context(push_clip(clip, server.port, name)) for name in names
        ]
        await until(lambda: server.stats()["publishers"] == 10, what="ten publishers")
        results = await asyncio.gather(*(finish(p) for p in procs))
        assert all(code == 0 for code, _ in results), results
        await until(lambda: all(s.closed for s in keys.sinks), what="ten clean closes")
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for sink in keys.sinks:
            assert sink.closed == [None]
            assert_complete_stream(sink)
        assert sorted(s.name for s in keys.sinks) == sorted(names)
        stats = server.stats()
        assert stats["publishes_total"] == 10 and stats["refused_unauthorized"] == 0
        print(
            f"\n10 publishers: {stats['reads'] / wall / 10:.0f} reads/s per stream, "
            f"server CPU {100 * cpu / wall / 10:.2f} % of a core per stream"
        )


async def _one_run(clip: Path, batch: float, streams: int) -> tuple[float, float]:
    names = [f"b{i}-{GOOD_KEY}" for i in range(streams)]
    keys = Keys({name: CollectingSink for name in names})
    async with (
        rtmp_server(keys, read_batch_seconds=batch) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        cpu0, wall0 = time.process_time(), time.monotonic()
        procs = [
            await stack.enter_async_context(push_clip(clip, server.port, name)) for name in names
        ]
        await asyncio.gather(*(finish(p) for p in procs))
        await until(lambda: len(keys.sinks) == streams and all(s.closed for s in keys.sinks))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for sink in keys.sinks:
            assert_complete_stream(sink)
        return server.stats()["reads"] / wall / streams, 100 * cpu / wall / streams


async def test_read_batching_cuts_socket_reads(clip: Path) -> None:
    """Reads per second per stream without and with batching (figures printed for the record).

    A 100 ms batch bounds a publishing connection to at most 20 reads/s,
    whatever the publisher's chunking; without it the server reads whenever
    a TCP segment burst lands.
    """
    streams = 3
    plain_reads, plain_cpu = await _one_run(clip, 0.0, streams)
    batched_reads, batched_cpu = await _one_run(clip, 0.1, streams)
    print(
        f"\nreads/s per stream: unbatched {plain_reads:.0f}, batched (100 ms) {batched_reads:.0f};"
        f" server CPU % of a core per stream: unbatched {plain_cpu:.2f}, batched {batched_cpu:.2f}"
    )
    assert batched_reads < 25  # about 13/s plus the handshake and commands
    assert plain_reads > 2 * batched_reads


@contextlib.contextmanager
def selector_changes_on_sockets() -> Iterator[list[int]]:
    """Count the event loop's epoll registrations, changes and removals on sockets.

    A spy on the running loop's real selector (each call is one epoll_ctl);
    FFmpeg's pipes, which the loop also watches, are left out.
    """
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    counted = [0]
    originals = {name: getattr(selector, name) for name in ("register", "modify", "unregister")}

    def spy(name: str) -> Callable[..., object]:
        def call(fileobj: int, *args: object) -> object:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{int(fileobj)}").startswith("socket:"):
                    counted[0] += 1
            return originals[name](fileobj, *args)

        return call

    for name in originals:
        setattr(selector, name, spy(name))
    try:
        yield counted
    finally:
        for name in originals:
            delattr(selector, name)  # the class's own methods again


async def test_batched_reading_does_not_toggle_the_transport(clip: Path) -> None:
    """A publisher's batches are read without pausing and resuming its transport.

    Pausing and resuming around each read batch cost two epoll_ctl per read
    (~56 a second per stream at 30 ms batches, more than the reads); now the
    listener's timer reads a publisher's socket itself, so the epoll changes
    per connection are a handful for its whole life (accept, authorization,
    close), whatever its length, while the reads stay batched.
    """
    streams = 3
    names = [f"t{i}-{GOOD_KEY}" for i in range(streams)]
    keys = Keys({name: CollectingSink for name in names})
    with selector_changes_on_sockets() as changes:
        async with (
            rtmp_server(keys, read_batch_seconds=0.03) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            wall0 = time.monotonic()
            procs = [
                await stack.enter_async_context(push_clip(clip, server.port, name))
                for name in names
            ]
            await asyncio.gather(*(finish(p) for p in procs))
            await until(lambda: len(keys.sinks) == streams and all(s.closed for s in keys.sinks))
            wall = time.monotonic() - wall0
            reads = server.stats()["reads"]
    for sink in keys.sinks:
        assert sink.closed == [None]
        assert_complete_stream(sink)
    per_stream = changes[0] / streams
    print(
        f"\nper stream: {reads / wall / streams:.0f} reads/s, {per_stream:.1f} epoll changes"
        f" in {wall:.1f} s"
    )
    assert reads / wall / streams < 40  # batched: about 30/s at 30 ms
    assert reads / streams > CLIP_SECONDS * 10  # and the batches were really read
    assert per_stream < 12  # toggling per batch made ~2 per read: > 200 for this clip


# GStreamer's two RTMP publishers: "rtmpsink" is librtmp (the library inside OBS
# and many cameras, TCP_NODELAY, its own chunking), "rtmp2sink" GStreamer's own.
GST_PUSH = """
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipe = Gst.parse_launch(sys.argv[1])
pipe.set_state(Gst.State.PLAYING)
done = Gst.MessageType.EOS | Gst.MessageType.ERROR
msg = pipe.get_bus().timed_pop_filtered(60 * Gst.SECOND, done)
pipe.set_state(Gst.State.NULL)
sys.exit(0 if msg is not None and msg.type == Gst.MessageType.EOS else 1)
"""


@pytest.mark.parametrize("element", ["rtmpsink", "rtmp2sink"])
async def test_gstreamer_publishers(element: str) -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        frames = 25 * CLIP_SECONDS
        pipeline = (
            f"videotestsrc is-live=true num-buffers={frames}"
            " ! video/x-raw,width=320,height=240,framerate=25/1"
            " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=50 ! h264parse"
            f" ! flvmux name=mux streamable=true"
            f" ! {element} location=rtmp://127.0.0.1:{server.port}/live/{GOOD_KEY}"
            f" audiotestsrc is-live=true num-buffers={44100 * CLIP_SECONDS // 1024}"
            " ! audioconvert ! avenc_aac ! aacparse ! queue ! mux."
        )
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/python3", "-c", GST_PUSH, pipeline,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            code, err = await finish(proc, within=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert code == 0, err
        sink = keys.sink(GOOD_KEY)
        await until(lambda: bool(sink.closed), what="clean close")
        assert sink.closed == [None]
        assert_complete_stream(sink)


async def test_wrong_key_is_refused_while_a_good_publisher_keeps_going(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="camstream_worker.servers.rtmp")
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server, push_clip(clip, server.port, GOOD_KEY) as good:
        await until(
            lambda: bool(keys.sinks) and len(keys.sinks[0].packets) > 10, what="good packets"
        )
        good_sink = keys.sink(GOOD_KEY)
        async with ffmpeg(
            "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-c:v", "libx264",
            "-preset", "ultrafast", "-t", "10", "-f", "flv",
            f"rtmp://127.0.0.1:{server.port}/live/{WRONG_KEY}",
        ) as bad:  # fmt: skip
            started = time.monotonic()
            code, _ = await finish(bad, within=20)
            assert code != 0
            assert time.monotonic() - started < 8, "the refused publisher must be told at once"
        before = len(good_sink.packets)
        await until(
            lambda: len(good_sink.packets) > before + 10, what="good publisher still flowing"
        )
        code, err = await finish(good)
        assert code == 0, err
        await until(lambda: bool(good_sink.closed))
        assert good_sink.closed == [None]
        assert_complete_stream(good_sink)
        stats = server.stats()
        assert stats["refused_unauthorized"] == 1 and stats["publishes_total"] == 1
    assert ("live", WRONG_KEY) in keys.asked
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "publish rejected" in text and "live/***" in text
    assert WRONG_KEY not in text and GOOD_KEY not in text


async def _raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + os.urandom(1536))
    s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * 1536), 10)
    assert s0s1s2[0] == 3
    writer.write(s0s1s2[1:1537])  # C2 echoes S1
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        return False if not reader.at_eof() else True
    return True


async def test_garbage_and_half_handshakes_do_not_disturb_a_good_publisher(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="camstream_worker.servers.rtmp")
    keys = Keys({GOOD_KEY: CollectingSink, OTHER_KEY: ExplodingSink})
    async with (
        rtmp_server(keys, handshake_timeout=1.5) as server,
        push_clip(clip, server.port, GOOD_KEY) as good,
        contextlib.AsyncExitStack() as stack,
    ):
        await until(
            lambda: bool(keys.sinks) and len(keys.sinks[0].packets) > 10, what="good packets"
        )
        good_sink = keys.sink(GOOD_KEY)
        attackers: list[asyncio.StreamWriter] = []

        # 1. an HTTP request on the RTMP port: wrong handshake version
        r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
        w1.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # 2. RTMPE (encrypted) handshake version
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
        w2.write(b"\x06" + os.urandom(1536))
        # 3. half a handshake, then silence (slowloris): the setup deadline closes it
        r3, w3 = await asyncio.open_connection("127.0.0.1", server.port)
        w3.write(b"\x03" + os.urandom(700))
        # 4. a good handshake, then random bytes
        r4, w4 = await _raw_handshake(server.port)
        w4.write(b"\xc5" + os.urandom(4000))  # fmt 3 on a chunk stream never opened
        # 5. a good handshake, then a 16 MiB message length
        r5, w5 = await _raw_handshake(server.port)
        w5.write(
            b"\x03" + b"\x00\x00\x00" + b"\xff\xff\xff" + b"\x14" + b"\x00\x00\x00\x00" + b"x" * 100
        )
        attackers += [w1, w2, w3, w4, w5]
        for writer in attackers:
            stack.callback(writer.close)
        # 6. a publisher whose sink raises: only that connection goes
        exploding = await stack.enter_async_context(push_clip(clip, server.port, OTHER_KEY))

        started = time.monotonic()
        for reader in (r1, r2, r4, r5):
            assert await _closed_by_server(reader), "a bad connection must be closed"
        assert time.monotonic() - started < 5
        assert await _closed_by_server(r3, within=10), "a half handshake must time out"
        code, _ = await finish(exploding)
        assert code != 0  # FFmpeg notices its connection was dropped

        code, err = await finish(good)
        assert code == 0, err
        await until(lambda: bool(good_sink.closed))
        assert good_sink.closed == [None]
        assert_complete_stream(good_sink)
        gaps = [b - a for a, b in itertools.pairwise(good_sink.arrivals)]
        assert max(gaps) < 2.0, "the good publisher must never stall"
        stats = server.stats()
        assert stats["refused_protocol"] >= 3 and stats["refused_timeout"] == 1
        assert stats["refused_too_large"] == 1  # the 16 MiB message
        assert keys.sink(OTHER_KEY).closed == ["internal error"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for needle in (
        "bad handshake version 71",
        "RTMPE",
        "not publishing within 1.5 s",
        "exceeds",
        "internal error",
    ):
        assert needle in text, needle
    assert GOOD_KEY not in text and OTHER_KEY not in text


async def test_video_only_publisher(clip: Path) -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        async with ffmpeg(
            "-re", "-i", str(clip), "-an", "-c:v", "copy", "-f", "flv",
            f"rtmp://127.0.0.1:{server.port}/live/{GOOD_KEY}",
        ) as proc:  # fmt: skip
            code, err = await finish(proc)
        assert code == 0, err
        sink = keys.sink(GOOD_KEY)
        await until(lambda: bool(sink.closed))
        assert_complete_stream(sink, audio=False)


async def test_a_second_publisher_for_a_live_stream_replaces_the_first(clip: Path) -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        async with push_clip(clip, server.port, GOOD_KEY, "-stream_loop", "-1") as first:
            await until(lambda: len(keys.sinks) == 1 and len(keys.sinks[0].packets) > 10)
            old = keys.sinks[0]
            async with push_clip(clip, server.port, GOOD_KEY) as second:
                await until(lambda: bool(old.closed), what="old publisher replaced")
                assert old.closed[0] is not None and old.closed[0].startswith(
                    "replaced by a new publisher"
                )
                code, _ = await finish(first)
                assert code != 0  # the replaced FFmpeg sees its connection closed
                code, err = await finish(second)
                assert code == 0, err
            new = keys.sinks[1]
            await until(lambda: bool(new.closed))
            assert new.closed == [None]
            assert_complete_stream(new)
        assert server.stats()["publishes_total"] == 2


async def test_connection_cap() -> None:
    keys = Keys({})
    async with rtmp_server(keys, max_connections=2) as server:
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await until(lambda: server.stats()["connections"] == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            assert await _closed_by_server(reader, within=5)
            assert server.stats()["refused_capacity"] == 1
            assert server.stats()["connections"] == 2
        finally:
            writer.close()
            for _, w in conns:
                w.close()


class ScriptedClient:
    """A publisher written step by step, to reach the protocol corners FFmpeg never uses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = ChunkDecoder()
        self.inbox: list[RtmpMessage] = []
        self.chunk_size = 128

    def send(self, csid: int, type_id: int, msid: int, ts: int, payload: bytes) -> None:
        self.writer.write(encode_message(csid, type_id, msid, ts, payload, self.chunk_size))

    def command(self, *values: object, msid: int = 0, amf3: bool = False) -> None:
        payload = amf0.encode_all(values)
        self.send(3, 17 if amf3 else 20, msid, 0, b"\x00" + payload if amf3 else payload)

    async def expect(
        self, match: Callable[[RtmpMessage], bool], within: float = 10.0
    ) -> RtmpMessage:
        async with asyncio.timeout(within):
            while True:
                for msg in self.inbox:
                    if match(msg):
                        self.inbox.remove(msg)
                        return msg
                data = await self.reader.read(65536)
                assert data, "server closed the connection"
                self.inbox += self.decoder.feed(data)

    async def expect_command(self, name: str) -> list[object]:
        def is_it(msg: RtmpMessage) -> bool:
            return msg.type_id == 20 and amf0.decode_all(msg.payload)[0] == name

        return amf0.decode_all((await self.expect(is_it)).payload)


def _flv_tag(tag_type: int, ts: int, body: bytes) -> bytes:
    header = bytes((tag_type,)) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
    header += bytes((ts >> 24,)) + b"\x00\x00\x00"
    return header + body + (11 + len(body)).to_bytes(4, "big")


async def test_protocol_details_with_a_scripted_client() -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        reader, writer = await _raw_handshake(server.port)
        client = ScriptedClient(reader, writer)
        try:
            client.command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
            assert (await client.expect(lambda m: m.type_id == 5)).payload == struct.pack(
                ">I", 2_500_000
            )
            assert (await client.expect(lambda m: m.type_id == 6)).payload[:4] == struct.pack(
                ">I", 2_500_000
            )
            assert (await client.expect(lambda m: m.type_id == 1)).payload == struct.pack(
                ">I", 4096
            )
            result = await client.expect_command("_result")
            assert result[1] == 1.0 and result[3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]

            client.send(2, 4, 0, 0, b"\x00\x06" + struct.pack(">I", 1234))  # ping request
            pong = await client.expect(lambda m: m.type_id == 4)
            assert pong.payload == b"\x00\x07" + struct.pack(">I", 1234)

            client.command("releaseStream", 2.0, None, GOOD_KEY)
            client.command("createStream", 3.0, None, amf3=True)  # AMF3 command form
            results = [await client.expect_command("_result") for _ in range(2)]
            assert [r[1] for r in results] == [2.0, 3.0] and results[1][3] == 1.0

            client.command("publish", 4.0, None, GOOD_KEY, "live", msid=1)
            begin = await client.expect(lambda m: m.type_id == 4)
            assert begin.payload == b"\x00\x00" + struct.pack(">I", 1)
            status = await client.expect_command("onStatus")
            assert status[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
            sink = keys.sink(GOOD_KEY)

            meta = amf0.encode_all(["@setDataFrame", "onMetaData", amf0.EcmaArray(width=640.0)])
            client.send(4, 18, 1, 0, meta)
            avcc = bytes.fromhex("0164001fffe100046764001f01000468ee3cb0")
            client.send(6, 9, 1, 0, b"\x17\x00\x00\x00\x00" + avcc)
            client.send(4, 8, 1, 0, b"\xaf\x00\x12\x10")
            # an aggregate of two video tags: times are relative to its first tag
            frames = [b"\x27\x01\x00\x00\x00" + struct.pack(">I", 3) + b"abc" for _ in range(2)]
            aggregate = _flv_tag(9, 1000, frames[0]) + _flv_tag(9, 1040, frames[1])
            client.send(6, 22, 1, 5000, aggregate)
            # a bigger chunk size, a small ack window, then a 10 kB frame
            client.send(2, 1, 0, 0, struct.pack(">I", 4096))
            client.chunk_size = 4096
            client.send(2, 5, 0, 0, struct.pack(">I", 4096))
            big = b"\x17\x01\x00\x00\x00" + struct.pack(">I", 10_000) + os.urandom(10_000)
            client.send(6, 9, 1, 5080, big)
            ack = await client.expect(lambda m: m.type_id == 3)
            assert struct.unpack(">I", ack.payload)[0] >= 4096

            await until(lambda: len(sink.packets) == 3, what="three video packets")
            assert sink.metadata == [{"width": 640.0}]
            assert [(c.kind, c.codec) for c in sink.configs] == [
                ("video", "h264"),
                ("audio", "aac"),
            ]
            assert [(p.dts_ms, p.keyframe, len(p.data)) for p in sink.packets] == [
                (5000, False, 7),
                (5040, False, 7),
                (5080, True, 10_004),
            ]
            client.command("deleteStream", 5.0, None, 1.0)
            await until(lambda: bool(sink.closed))
            assert sink.closed == [None]
            assert server.stats()["refused_protocol"] == 0
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("codec_args", "reason"),
    [
        (["-c:v", "flv1", "-an"], "unsupported video codec id 2"),  # Sorenson H.263
        (["-vn", "-c:a", "libmp3lame"], "unsupported audio codec id 2"),  # MP3
    ],
)
async def test_unsupported_codec_ends_the_publish_with_a_clear_reason(
    codec_args: list[str], reason: str
) -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        async with ffmpeg(
            "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
            "-f", "lavfi", "-i", "sine", "-t", "3", *codec_args,
            "-f", "flv", f"rtmp://127.0.0.1:{server.port}/live/{GOOD_KEY}",
        ) as proc:  # fmt: skip
            await until(lambda: bool(keys.sinks) and bool(keys.sinks[0].closed), what="close")
            assert keys.sinks[0].closed == [reason]
            # the server hangs up at once (FFmpeg may or may not notice before its end)
            await until(lambda: server.stats()["connections"] == 0, within=5, what="hang up")
            await finish(proc)
        assert server.stats()["refused_protocol"] == 0  # a media problem, not a protocol one


async def test_a_stalled_publisher_is_dropped_after_the_idle_timeout(clip: Path) -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with (
        rtmp_server(keys, idle_timeout=1.0) as server,
        push_clip(clip, server.port, GOOD_KEY, "-stream_loop", "-1") as proc,
    ):
        await until(lambda: bool(keys.sinks) and len(keys.sinks[0].packets) > 10)
        proc.send_signal(signal.SIGSTOP)  # our own FFmpeg: a camera that hangs, socket open
        try:
            await until(lambda: bool(keys.sinks[0].closed), within=10, what="idle close")
        finally:
            proc.send_signal(signal.SIGCONT)
        assert keys.sinks[0].closed == ["no data for 1 s"]
        assert server.stats()["refused_timeout"] == 1 and server.stats()["connections"] == 0


async def test_a_player_is_refused() -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:
        url = f"rtmp://127.0.0.1:{server.port}/live/{GOOD_KEY}"
        async with ffmpeg(
            "-rw_timeout", "5000000", "-i", url, "-t", "1", "-f", "null", "-"
        ) as proc:
            code, _ = await finish(proc, within=20)
        assert code != 0
        assert server.stats()["refused_protocol"] == 1 and not keys.sinks


async def test_a_failing_authorizer_counts_as_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    def authorize(app: str, stream_name: str, peer: str) -> None:
        raise RuntimeError("secret store down")

    async with rtmp_server(authorize) as server:  # type: ignore[arg-type]
        reader, writer = await _raw_handshake(server.port)
        client = ScriptedClient(reader, writer)
        try:
            client.command("connect", 1.0, {"app": "live"})
            await client.expect_command("_result")
            client.command("publish", 2.0, None, GOOD_KEY, "live", msid=1)
            status = await client.expect_command("onStatus")
            assert status[3]["code"] == "NetStream.Publish.BadName"  # type: ignore[index]
            assert await _closed_by_server(reader)
        finally:
            writer.close()
        assert server.stats()["refused_unauthorized"] == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "authorizer failed" in text and GOOD_KEY not in text
