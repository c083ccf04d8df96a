"""Issue 8 x issue 11: a stream's past is guarded like its present.

One real standalone worker (`camstream run`, one engine process) records to
its local folder store (standalone's default) and runs:

    default/vault   spec.playback.auth.mode: signed, recorded in 10 s groups,
                    a one-minute DVR window (dvr.m3u8)
    default/open    no auth, not recorded: the public case stays public

Every recordings URL of the vault (recorded ranges, the VOD playlist, a
byte range of a recorded object, HEAD of it, a clip, dvr.m3u8 and a DVR
segment, and the player page that draws the timeline) is refused without a
valid token — no token, an expired one, a tampered one, another stream's —
with a JSON refusal and none of the recording's bytes; with the token each
is served, the VOD and DVR playlists repeat it on their URIs, the page
hands it to its timeline, and protected answers are never for a shared
cache. The recordings of a stream the worker does not know (deleted since,
say) are not public either. Behind the any-worker proxy the owner decides.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from camstream import playback_tokens as tokens
from camstream.spec import StreamKey
from camstream_worker.servers.http.server import bound_port, make_app, serve
from tests.media.worker_process import WorkerProcess
from tests.security.viewers import key_secret, synthetic_stream

pytestmark = [pytest.mark.security, pytest.mark.media, pytest.mark.timeout(240)]

NS_KEY = "ns-default-recordings-key-9a7c5e3b1d2f4068"
BASE = "/streams/default/vault/"
ISSUED: list[str] = []


def sign(namespace: str, name: str | None, seconds: float = 600) -> str:
    grant = tokens.Grant(namespace, name, int(time.time() + seconds))
    token = tokens.sign(NS_KEY.encode(), grant)
    ISSUED.append(token)
    return token


def token_query(url: str) -> str:
    """The part of a playlist URI before its ?token=, which must be there."""
    assert "?token=" in url, url
    return url.split("?token=", 1)[0]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    manifests = [
        key_secret(NS_KEY),
        synthetic_stream(
            "vault",
            auth={"mode": "signed"},
            hls={"segmentSeconds": 2},
            recording={"enabled": True, "groupSeconds": 10, "dvrMinutes": 1},
        ),
        synthetic_stream("open", hls={"segmentSeconds": 2}),
    ]
    process = WorkerProcess(manifests, tmp_path_factory.mktemp("recordings"), 1)
    try:
        process.start()
        process.wait_for("vault", phase="Live")
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def _recorded(worker: WorkerProcess, client: aiohttp.ClientSession) -> dict[str, Any]:
    """Wait (with a token) until a group is in the store; its ranges."""
    token = sign("default", "vault")
    deadline = time.monotonic() + 90
    while True:
        async with client.get(
            worker.base_url + BASE + "recordings/ranges.json", params={"token": token}
        ) as r:
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
        if data["ranges"]:
            return data
        assert time.monotonic() < deadline, f"nothing recorded in 90 s\n{worker.log()[-2000:]}"
        await asyncio.sleep(1.0)


async def _urls(worker: WorkerProcess, client: aiohttp.ClientSession) -> dict[str, str]:
    """Every kind of recordings URL of the vault, with real times and names."""
    data = await _recorded(worker, client)
    span = data["ranges"][0]
    start, end = span["start_ms"] / 1000, span["end_ms"] / 1000
    window = f"from={start}&to={end}"
    token = sign("default", "vault")
    async with client.get(
        f"{worker.base_url}{BASE}recordings/index.m3u8?{window}", params={"token": token}
    ) as r:
        assert r.status == 200
        vod = await r.text()
    objects = [line for line in vod.splitlines() if line and not line.startswith("#")]
    dvr_segment = ""
    deadline = time.monotonic() + 30
    while not dvr_segment:
        assert time.monotonic() < deadline, "no DVR window in 30 s"
        async with client.get(f"{worker.base_url}{BASE}dvr.m3u8", params={"token": token}) as r:
            if r.status == 200:
                lines = (await r.text()).splitlines()
                dvr_segment = next((x for x in lines if x and not x.startswith("#")), "")
        if not dvr_segment:
            await asyncio.sleep(0.5)
    return {
        "ranges": f"{BASE}recordings/ranges.json",
        "vod playlist": f"{BASE}recordings/index.m3u8?{window}",
        "object": BASE + "recordings/" + token_query(objects[0]),
        "clip": f"{BASE}recordings/clip.mp4?{window}",
        "dvr playlist": f"{BASE}dvr.m3u8",
        "dvr segment": BASE + token_query(dvr_segment),
        "player page": BASE,
    }


def _with(url: str, token: str) -> str:
    return url + ("&" if "?" in url else "?") + "token=" + token


async def test_every_recordings_url_is_refused_without_a_valid_token(
    worker: WorkerProcess, client: aiohttp.ClientSession
) -> None:
    urls = await _urls(worker, client)
    good = sign("default", "vault")
    tampered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    cases = [
        ("no token", None, 401, "token_missing"),
        ("expired", sign("default", "vault", seconds=-1), 401, "expired"),
        ("tampered", tampered, 401, "bad_signature"),
        ("another stream's", sign("default", "open"), 403, "wrong_stream"),
    ]
    for case, token, status, reason in cases:
        for what, url in urls.items():
            target = worker.base_url + (url if token is None else _with(url, token))
            for method in ("GET", "HEAD"):
                headers = {"Range": "bytes=0-187"} if what == "object" else {}
                async with client.request(method, target, headers=headers) as r:
                    body = await r.read()
                    where = f"{case}: {method} {what}"
                    assert r.status == status, (where, r.status, body[:200])
                    assert r.headers["Cache-Control"] == "no-store", where
                    assert r.headers["WWW-Authenticate"].startswith("Bearer"), where
                    assert "Content-Range" not in r.headers, where
                    if method == "GET":
                        answer = json.loads(body)
                        assert answer["reason"] == reason, (where, answer)
                        assert answer["stream"] == "default/vault", where
                        # Nothing of the past: no playlist, no MPEG-TS, no MP4, no ranges.
                        assert b"#EXTM3U" not in body and b"\x47" not in body[:1], where
                        assert b"ftyp" not in body and b"start_ms" not in body, where
                        assert b"<video" not in body, where


async def test_with_the_token_every_recordings_url_is_served_and_carries_it_on(
    worker: WorkerProcess, client: aiohttp.ClientSession
) -> None:
    urls = await _urls(worker, client)
    token = sign("default", "vault")
    base = worker.base_url

    async with client.get(_with(base + urls["ranges"], token)) as r:
        assert r.status == 200 and (await r.json())["ranges"]
        assert r.headers["Cache-Control"].startswith("private")
    async with client.get(_with(base + urls["vod playlist"], token)) as r:
        text = await r.text()
        assert r.status == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in text
        uris = [x for x in text.splitlines() if x and not x.startswith("#")]
        assert uris and all(u.endswith(f"?token={token}") for u in uris), uris
        assert r.headers["Referrer-Policy"] == "no-referrer"
    async with client.get(
        _with(base + urls["object"], token), headers={"Range": "bytes=0-187"}
    ) as r:
        body = await r.read()
        assert r.status == 206 and len(body) == 188 and body[:1] == b"\x47"
        assert r.headers["Cache-Control"].startswith("private")  # no shared cache keeps it
    # The same object for a header-borne token, as a player that sets it asks.
    async with client.get(
        base + urls["object"], headers={"Range": "bytes=0-187", "Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 206
    async with client.get(_with(base + urls["clip"], token)) as r:
        body = await r.read()
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
        assert b"ftyp" in body[:64] and len(body) > 10_000
    async with client.get(_with(base + urls["dvr playlist"], token)) as r:
        uris = [x for x in (await r.text()).splitlines() if x and not x.startswith("#")]
        assert r.status == 200 and uris and all(u.endswith(f"?token={token}") for u in uris)
    async with client.get(_with(base + urls["dvr segment"], token)) as r:
        assert r.status == 200 and (await r.read())[:1] == b"\x47"
    async with client.get(_with(base + urls["player page"], token)) as r:
        page = await r.text()
        assert r.status == 200
        # The timeline's requests (ranges, VOD, clip, dvr.m3u8) get the token from here.
        assert f'data-recordings="recordings/" data-token="{token}"' in page


async def test_the_past_of_a_stream_the_worker_does_not_know_is_not_public(
    worker: WorkerProcess, client: aiohttp.ClientSession
) -> None:
    """A deleted stream's recordings outlive its spec: without it they are
    guarded by the namespace's key, never open by default."""
    gone = f"{worker.base_url}/streams/default/gone/recordings/ranges.json"
    async with client.get(gone) as r:
        assert r.status == 401 and (await r.json())["reason"] == "token_missing"
    async with client.get(gone, params={"token": sign("default", "gone")}) as r:
        assert r.status == 200 and (await r.json())["ranges"] == []
    # A public stream the worker knows keeps its public answers.
    async with client.get(f"{worker.base_url}/streams/default/open/recordings/ranges.json") as r:
        assert r.status == 200 and (await r.json())["ranges"] == []
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_the_owner_decides_on_recordings_behind_the_any_worker_proxy(
    worker: WorkerProcess, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A front worker (this process, on 127.0.0.2) that neither runs the
    stream nor keeps recordings forwards every recordings request to the
    owner, which checks the token with the stream's spec."""
    urls = await _urls(worker, client)

    class Owners:
        def owner_url(self, key: StreamKey) -> str | None:
            return worker.base_url

    class Nothing:
        def statuses(self) -> list[Any]:
            return []

        def status(self, key: StreamKey) -> None:
            return None

    front_app = make_app(Nothing(), tmp_path, owner=Owners(), worker_name="front")
    runner = await serve(front_app, "127.0.0.2", 0)
    front = f"http://127.0.0.2:{bound_port(runner)}"
    token = sign("default", "vault")
    try:
        for what in ("ranges", "vod playlist", "object", "clip"):
            async with client.get(front + urls[what]) as r:
                assert r.status == 401, what
                assert r.headers["X-Camstream-Served-By"] == "standalone", what
            async with client.get(_with(front + urls[what], token)) as r:
                await r.read()
                assert r.status == 200, what
                assert r.headers["X-Camstream-Served-By"] == "standalone", what
        async with client.get(_with(front + urls["clip"], token)) as r:
            assert r.headers["Content-Disposition"].startswith("attachment")
    finally:
        await runner.cleanup()


async def test_no_key_or_token_shows_in_the_log_or_metrics(
    worker: WorkerProcess, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{worker.base_url}/metrics") as r:
        metrics = await r.text()
    assert ISSUED
    for place, text in (("log", worker.log()), ("/metrics", metrics)):
        for secret in (NS_KEY, *ISSUED):
            assert secret not in text, f"a key or token in {place}"
