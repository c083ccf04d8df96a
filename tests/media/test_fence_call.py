"""The fence between two workers, over real HTTP and the pools' real engine processes.

Two worker halves on loopback, as cluster mode builds them (cluster/cli.py):
each a ShardedEngine with its own engine process and HLS folder, an HTTP
app with the fence route (cluster/fencing.py), and a ring document the
test sets, standing for the ring ConfigMap. One synthetic stream runs on the
old owner; the new owner starts it ahead of the old one (a handoff's
SequenceStart), numbers provisionally and publishes nothing; the old owner
refuses a fence while its ring says it still serves the stream and refuses
anything unsigned; once the ring flips, the new owner's call stops the old
owner's playlist and the new owner's playlist lists the old one's newest
segments (their bytes carried in the answer) and continues right after its
last number. Without a peer token the new owner does not ask and
publishes its provisional numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from camstream import wire
from camstream.handoff import RingDoc
from camstream.spec import StreamKey, StreamSpec, parse_stream
from camstream_worker.cluster import fence_answer, peer_auth
from camstream_worker.cluster.desired import next_sequence_from_playlist
from camstream_worker.cluster.fencing import FENCE_SECONDS, PREFIX, Fencing, path_of
from camstream_worker.outputs.hls.sequence import TAIL_SEGMENTS, Said, SequenceStart, TailSegment
from camstream_worker.pool.sharded import ShardedEngine
from camstream_worker.secrets.static import StaticSecrets
from camstream_worker.state import stream_dir
from tests.harness.hlscheck import parse_media_playlist

pytestmark = pytest.mark.media

TOKEN = "fence-test-peer-token-0123"
KEY = StreamKey("cams", "door")
PARTITIONS = 8
LOOPBACK = "127.0.0.1"


def _spec() -> StreamSpec:
    return parse_stream(
        {
            "apiVersion": "camstream.io/v1alpha1",
            "kind": "CameraStream",
            "metadata": {"namespace": KEY.namespace, "name": KEY.name},
            "spec": {
                "source": {
                    "protocol": "synthetic",
                    "synthetic": {"width": 160, "height": 90, "fps": 10, "bitrateKbps": 100},
                },
                "hls": {"segmentSeconds": 1, "windowSegments": 6},
            },
        }
    )


def _doc(serving: str) -> RingDoc:
    return RingDoc(
        partitions=PARTITIONS,
        version=1,
        table=None,
        serving=(serving,) * PARTITIONS,
        addresses={"old": LOOPBACK, "new": LOOPBACK},
    )


@dataclass
class Half:
    """One worker's engine, fence and HTTP port; `ring` is what its ring says."""

    engine: ShardedEngine
    fencing: Fencing
    folder: Path
    port: int
    ring: RingDoc

    def playlist(self) -> str | None:
        try:
            return (self.folder / wire.PLAYLIST).read_text()
        except FileNotFoundError:
            return None


@asynccontextmanager
async def _half(root: Path, me: str, token: str | None, peer_port: int) -> AsyncIterator[Half]:
    engine = ShardedEngine(root, StaticSecrets(), 1)
    await engine.start()
    half: Half | None = None
    fencing = Fencing(
        me=me, engine=engine, doc=lambda: half.ring if half else None, http_port=peer_port,
        token=token,
    )  # fmt: skip
    app = web.Application()
    fencing.add_route(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    half = Half(engine, fencing, root / stream_dir(KEY), port, _doc("old"))
    try:
        yield half
    finally:
        await engine.apply({})
        await engine.close()
        await fencing.close()
        await runner.cleanup()


async def _until(what: str, check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _numbers(text: str | None) -> list[int]:
    return [] if text is None else [s.sequence for s in parse_media_playlist(text).segments]


async def _post(port: int, headers: dict[str, str], key: StreamKey = KEY) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        url = f"http://{LOOPBACK}:{port}{path_of(key)}"
        async with session.post(url, headers=headers) as response:
            return response.status, await response.text()


async def _handed_over(old: Half, new: Half) -> None:
    """The stream live on the old owner, then started on the new one ahead of it."""
    spec = _spec()
    await old.engine.apply({KEY: spec})
    await _until("3 segments on the old owner", lambda: len(_numbers(old.playlist())) >= 3)
    source_next = next_sequence_from_playlist(old.playlist() or "")
    assert source_next is not None
    start = SequenceStart(source_next, ahead_of=time.time())
    await new.engine.apply({KEY: spec}, start_sequences={KEY: start})
    await _until("2 provisional segments", lambda: len(list(new.folder.glob("seg*.ts"))) >= 2)


async def test_the_new_owner_fences_the_old_one_and_follows_on(tmp_path: Path) -> None:
    # The new owner asks at the old one's port (in a StatefulSet all share one).
    async with (
        _half(tmp_path / "old", "old", TOKEN, 0) as old,
        _half(tmp_path / "new", "new", TOKEN, old.port) as new,
    ):
        await _handed_over(old, new)
        assert new.playlist() is None  # provisional numbers: never shown

        # Unsigned, signed with another token, or stale: refused, nothing fenced.
        now = time.time()
        path = path_of(KEY)
        assert (await _post(old.port, {}))[0] == 403
        forged = peer_auth.sign("another-token-0123456789", "POST", path, now)
        assert (await _post(old.port, {"Authorization": forged}))[0] == 403
        stale = peer_auth.sign(TOKEN, "POST", path, now - 2 * peer_auth.FRESH_SECONDS)
        assert (await _post(old.port, {"Authorization": stale}))[0] == 403
        # Signed, but the old owner's ring says it still serves the stream.
        signed = {"Authorization": peer_auth.sign(TOKEN, "POST", path, now)}
        status, text = await _post(old.port, signed)
        assert (status, text.strip()) == (409, "this worker still serves the stream")
        await asyncio.sleep(1.5)
        assert len(_numbers(old.playlist())) >= 4  # still publishing: not fenced

        # The flip: the new owner's ring says it serves; the old owner's says so a
        # moment later (its watch lags), and the new owner asks again meanwhile.
        new.ring = _doc("new")

        async def old_ring_catches_up() -> None:
            await asyncio.sleep(0.4)
            old.ring = _doc("new")

        started = time.monotonic()
        await asyncio.gather(new.fencing.follow(KEY, LOOPBACK), old_ring_catches_up())
        assert time.monotonic() - started < FENCE_SECONDS
        assert old.fencing.answered == 1

        last = _numbers(old.playlist())[-1]
        await _until("the new owner's playlist", lambda: new.playlist() is not None, 5.0)
        await asyncio.sleep(2.5)  # a few more cuts on both
        assert _numbers(old.playlist())[-1] == last  # fenced: nothing more published
        after = parse_media_playlist(new.playlist() or "")
        numbers = [s.sequence for s in after.segments]
        # The old owner's newest segments first, its bytes, then the new owner's
        # own: no hole for a player to wait on, and numbers a player coming
        # over from the old owner knows.
        assert numbers[0] == last - TAIL_SEGMENTS + 1, (last, numbers)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        for segment in after.segments[:TAIL_SEGMENTS]:
            assert (new.folder / segment.uri).read_bytes() == (
                old.folder / segment.uri
            ).read_bytes()
        own = after.segments[TAIL_SEGMENTS:]
        assert own and own[0].sequence == last + 1 and own[0].discontinuity


async def test_without_a_peer_token_nobody_is_asked_and_the_new_owner_publishes(
    tmp_path: Path,
) -> None:
    async with (
        _half(tmp_path / "old", "old", None, 0) as old,
        _half(tmp_path / "new", "new", None, old.port) as new,
    ):
        await _handed_over(old, new)
        signed = {"Authorization": peer_auth.sign(TOKEN, "POST", path_of(KEY), time.time())}
        old.ring = new.ring = _doc("new")
        assert (await _post(old.port, signed))[0] == 403  # no token here: never open
        started = time.monotonic()
        await new.fencing.follow(KEY, LOOPBACK)
        assert time.monotonic() - started < 0.5  # nobody asked
        assert old.fencing.answered == 0
        numbers = _numbers(new.playlist())
        assert numbers and numbers[0] > _numbers(old.playlist())[-1]  # provisional, above


async def test_a_stream_its_old_owner_stops_at_the_flip_is_fenced_from_what_it_said(
    tmp_path: Path,
) -> None:
    """The usual order in a cluster: the old owner sees the flip too and stops the
    stream (removing its files) while, or before, the new owner asks. It answers
    from what the stream's writers said when it stopped."""
    async with (
        _half(tmp_path / "old", "old", TOKEN, 0) as old,
        _half(tmp_path / "new", "new", TOKEN, old.port) as new,
    ):
        await _handed_over(old, new)
        old.ring = new.ring = _doc("new")
        last = _numbers(old.playlist())[-1]
        stopping = asyncio.create_task(old.engine.apply({}))  # its agent, at the flip
        await new.fencing.follow(KEY, LOOPBACK)
        await stopping
        assert old.playlist() is None  # stopped, files gone
        assert old.fencing.answered == 1
        await _until("the new owner's playlist", lambda: new.playlist() is not None, 5.0)
        numbers = _numbers(new.playlist())
        # The old owner's tail, kept when it stopped (its files are gone), then
        # the new owner's own. It may have cut one more between our look and its stop.
        assert numbers[0] - 1 + TAIL_SEGMENTS in (last, last + 1), (last, numbers)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))

        # A stream it never ran: nothing to say.
        other = StreamKey(KEY.namespace, "elsewhere")
        signed = {"Authorization": peer_auth.sign(TOKEN, "POST", path_of(other), time.time())}
        assert (await _post(old.port, signed, other))[0] == 404


async def test_an_answer_not_signed_by_a_worker_is_not_followed(tmp_path: Path) -> None:
    """The answer carries segments the new owner publishes, so whoever answers at
    the old owner's address must prove it is a worker: an answer signed with
    another token is ignored, and the new owner publishes its provisional
    numbers, none of the stranger's segments."""
    planted = 10**9

    async def stranger(request: web.Request) -> web.Response:
        said = Said(planted, time.time(), (TailSegment(planted, 2.0, planted, None, True, b"G"),))
        body = fence_answer.encode({"": said}, (0.0, 0.0))
        other = "another-token-0123456789"
        signed = peer_auth.sign(
            other, peer_auth.ANSWER, peer_auth.answer_path(request.path, body), time.time()
        )
        return web.Response(body=body, headers={peer_auth.ANSWER_HEADER: signed})

    app = web.Application()
    app.router.add_post(f"{PREFIX}/{{ns}}/{{name}}", stranger)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    try:
        async with (
            _half(tmp_path / "old", "old", TOKEN, 0) as old,
            _half(tmp_path / "new", "new", TOKEN, runner.addresses[0][1]) as new,
        ):
            await _handed_over(old, new)
            new.ring = _doc("new")
            await new.fencing.follow(KEY, LOOPBACK)
            await _until("the new owner's playlist", lambda: new.playlist() is not None, 5.0)
            numbers = _numbers(new.playlist())
            assert numbers and numbers[0] > _numbers(old.playlist())[-1]  # provisional
            assert planted not in numbers and not (new.folder / f"seg{planted}.ts").exists()
    finally:
        await runner.cleanup()
