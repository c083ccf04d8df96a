"""The worker's HTTP server, for real: aiohttp on loopback, HLS made by the ffmpeg CLI.

Scenarios: serving HLS files (types, caching, CORS, HEAD, ranges), refusing
traversal (raw request lines, encoded dots, symlinks out of the root),
404s, pages and static files, health, Prometheus metrics parsed back, the
JSON API, and forwarding between two workers on 127.0.0.1 and 127.0.0.2.

The only stand-in is the StreamDirectory: a tiny class holding StreamStatus
values (plain data), because the supervisor that normally fills it is not
what is under test here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from camstream.spec import StreamKey
from camstream_worker.servers.http import server as http_server
from camstream_worker.servers.http.server import bound_port, make_app, serve
from camstream_worker.state import Phase, StreamStatus

pytestmark = [pytest.mark.media, pytest.mark.timeout(60)]

CAM = StreamKey("default", "cam-1")
IDLE = StreamKey("site-b", "door")
SECRET_MARKER = b"TOP-SECRET-OUTSIDE-THE-ROOT"


@dataclass
class Directory:
    """A StreamDirectory holding fixed statuses (pure data, no supervisor)."""

    items: dict[StreamKey, StreamStatus] = field(default_factory=dict)

    def statuses(self) -> list[StreamStatus]:
        return list(self.items.values())

    def status(self, key: StreamKey) -> StreamStatus | None:
        return self.items.get(key)


@dataclass
class Owners:
    """An OwnerLocator with a fixed answer per stream."""

    urls: dict[StreamKey, str] = field(default_factory=dict)

    def owner_url(self, key: StreamKey) -> str | None:
        return self.urls.get(key)


def live_status(key: StreamKey = CAM) -> StreamStatus:
    now = time.time()
    return StreamStatus(
        key=key,
        protocol="rtsp",
        phase=Phase.LIVE,
        since=now - 60,
        reconnects=2,
        bytes_in=123_456,
        segments=3,
        last_segment_at=now - 1.5,
        media_sequence=7,
        video_codec="h264",
        width=320,
        height=240,
    )


def idle_status() -> StreamStatus:
    return StreamStatus(
        key=IDLE,
        protocol="rtmp",
        phase=Phase.RECONNECTING,
        reason="SourceClosed",
        message="publisher went away <b>now</b>",
        reconnects=5,
    )


@pytest.fixture(scope="module")
def ffmpeg_hls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2-second MPEG-TS segments and a playlist, made by the ffmpeg CLI."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the ffmpeg CLI is required (Debian package ffmpeg)"
    out = tmp_path_factory.mktemp("ffmpeg-hls")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "6"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-g", "50"]
    args += ["-f", "hls", "-hls_time", "2", "-hls_segment_filename", str(out / "seg-%03d.ts")]
    subprocess.run(
        [*args, str(out / "index.m3u8")],
        check=True,
        timeout=60,
    )
    return out


@pytest.fixture
def hls_root(tmp_path: Path, ffmpeg_hls: Path) -> Path:
    """<root>/default/cam-1/ holds the ffmpeg output; a secret lies outside the root."""
    root = tmp_path / "hls"
    shutil.copytree(ffmpeg_hls, root / CAM.namespace / CAM.name)
    (root / IDLE.namespace / IDLE.name).mkdir(parents=True)
    (tmp_path / "secret.ts").write_bytes(SECRET_MARKER)
    # Inside the root but outside any stream folder: one ".." away.
    (root / CAM.namespace / "secret.ts").write_bytes(SECRET_MARKER)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.m3u8").write_bytes(SECRET_MARKER)
    return root


@dataclass
class Server:
    url: str
    host: str
    port: int
    directory: Directory
    root: Path


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., asyncio.Future[Server]]]:
    """Start real servers on loopback; all are cleaned up when the test ends."""
    runners: list[web.AppRunner] = []

    async def _start(
        directory: Directory,
        root: Path,
        host: str = "127.0.0.1",
        **kwargs: object,
    ) -> Server:
        app = make_app(directory, root, **kwargs)  # type: ignore[arg-type]
        runner = await serve(app, host, 0)
        runners.append(runner)
        port = bound_port(runner)
        return Server(f"http://{host}:{port}", host, port, directory, root)

    try:
        yield _start  # type: ignore[misc]
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def server(start, hls_root: Path) -> Server:  # type: ignore[no-untyped-def]
    directory = Directory({CAM: live_status(), IDLE: idle_status()})
    return await start(directory, hls_root, worker_name="worker-a")


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def raw_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as written (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response


# --- HLS files ---------------------------------------------------------------


async def test_playlist_is_served_uncached_with_cors(server: Server, client) -> None:
    async with client.get(f"{server.url}/streams/default/cam-1/index.m3u8") as r:
        body = await r.read()
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["X-Camstream-Served-By"] == "worker-a"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert body == (server.root / "default/cam-1/index.m3u8").read_bytes()
    assert body.startswith(b"#EXTM3U") and b"seg-000.ts" in body


async def test_segment_is_cacheable_mpegts_with_head_and_ranges(server: Server, client) -> None:
    url = f"{server.url}/streams/default/cam-1/seg-001.ts"
    on_disk = (server.root / "default/cam-1/seg-001.ts").read_bytes()
    async with client.get(url) as r:
        body = await r.read()
        assert r.status == 200
        assert r.headers["Content-Type"] == "video/mp2t"
        assert r.headers["Cache-Control"].startswith("public, max-age=")
        assert int(r.headers["Cache-Control"].split("max-age=")[1].split(",")[0]) >= 3600
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert body == on_disk and body[0] == 0x47  # MPEG-TS sync byte

    async with client.head(url) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(on_disk)
        assert r.headers["Content-Type"] == "video/mp2t"
        assert await r.read() == b""

    async with client.get(url, headers={"Range": "bytes=188-375"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 188-375/{len(on_disk)}"
        assert await r.read() == on_disk[188:376]


async def test_cors_preflight(server: Server, client) -> None:
    headers = {
        "Origin": "https://elsewhere.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    async with client.options(
        f"{server.url}/streams/default/cam-1/index.m3u8", headers=headers
    ) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in r.headers["Access-Control-Allow-Methods"]
        assert "Range" in r.headers["Access-Control-Allow-Headers"]


async def test_unknown_stream_and_missing_file_are_404_and_not_cached(
    server: Server, client
) -> None:
    # Files on disk do not make a stream known: the directory decides.
    (server.root / "default" / "gone").mkdir()
    (server.root / "default" / "gone" / "index.m3u8").write_text("#EXTM3U\n")
    for path, error in [
        ("/streams/default/gone/index.m3u8", "unknown stream"),
        ("/streams/nope/cam-1/index.m3u8", "unknown stream"),
        ("/streams/default/cam-1/seg-999.ts", "no such file"),
        ("/streams/site-b/door/index.m3u8", "no such file"),
    ]:
        async with client.get(server.url + path) as r:
            assert r.status == 404, path
            assert r.headers["Cache-Control"] == "no-store"
            assert (await r.json())["error"] == error


async def test_a_playlist_not_written_yet_is_held_until_it_appears(server: Server, client) -> None:
    # site-b/door runs here but has no segment yet (it just moved here).
    folder = server.root / "site-b" / "door"
    folder.mkdir(parents=True, exist_ok=True)

    async def write_later() -> None:
        await asyncio.sleep(1.0)
        (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n")

    started = time.monotonic()
    writer = asyncio.create_task(write_later())
    async with client.get(server.url + "/streams/site-b/door/index.m3u8") as r:
        assert r.status == 200
        assert "MEDIA-SEQUENCE:7" in await r.text()
    await writer
    assert 0.9 < time.monotonic() - started < http_server.PLAYLIST_HOLD_SECONDS


@pytest.mark.parametrize(
    "target",
    [
        "/streams/default/cam-1/../../../secret.ts",
        "/streams/default/cam-1/../secret.ts",
        "/streams/default/cam-1/%2e%2e/secret.ts",
        "/streams/default/cam-1/720p/../../secret.ts",
        "/streams/default/cam-1/%2e%2e/%2e%2e/%2e%2e/secret.ts",
        "/streams/default/cam-1/%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.ts",
        "/streams/default/cam-1/..%2f..%2f..%2fsecret.ts",
        "/streams/default/%2e%2e/cam-1/index.m3u8",
        "/streams/%2e%2e/%2e%2e/outside/index.m3u8",
        "/streams/default/cam-1/%2fetc%2fpasswd",
        "/streams/default/cam-1//etc/passwd",
        "/streams/default/cam-1/..\\..\\..\\secret.ts",
        "/streams/default/cam-1/.%2e/.%2e/.%2e/secret.ts",
        "/streams/default/cam-1/%252e%252e/secret.ts",
        "/static/../../../../secret.ts",
        "/static/%2e%2e/http_server.py",
    ],
)
async def test_traversal_attempts_never_reach_a_file(server: Server, target: str) -> None:
    status, response = await raw_get(server.host, server.port, target)
    assert status in (400, 404), response[:200]
    assert SECRET_MARKER not in response
    assert b"def make_app" not in response


async def test_symlinks_out_of_the_stream_folder_are_not_followed(server: Server, client) -> None:
    folder = server.root / "default" / "cam-1"
    outside = server.root.parent
    (folder / "leak.ts").symlink_to(outside / "secret.ts")
    (folder / "720p").symlink_to(outside / "outside", target_is_directory=True)
    # The other stream's folder is inside the root but not inside this stream's.
    (server.root / "site-b" / "door" / "index.m3u8").symlink_to(folder / "index.m3u8")
    (folder / "inside.ts").symlink_to(folder / "seg-000.ts")  # stays inside: fine
    for path in [
        "/streams/default/cam-1/leak.ts",
        "/streams/default/cam-1/720p/index.m3u8",
        "/streams/site-b/door/index.m3u8",
    ]:
        async with client.get(server.url + path) as r:
            assert r.status == 404, path
            assert SECRET_MARKER not in await r.read()
    async with client.get(f"{server.url}/streams/default/cam-1/inside.ts") as r:
        assert r.status == 200
        assert await r.read() == (folder / "seg-000.ts").read_bytes()


async def test_symlinked_stream_folder_is_refused(start, tmp_path: Path, ffmpeg_hls: Path, client):
    root = tmp_path / "root"
    (root / "default").mkdir(parents=True)
    (root / "default" / "cam-1").symlink_to(ffmpeg_hls, target_is_directory=True)
    server = await start(Directory({CAM: live_status()}), root)
    async with client.get(f"{server.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 404


async def test_served_hls_plays_in_ffprobe(server: Server) -> None:
    """ffprobe reads the playlist over HTTP from the server, segments and all."""
    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "the ffprobe CLI is required (Debian package ffmpeg)"
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-count_packets",
        f"{server.url}/streams/default/cam-1/index.m3u8",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    streams = json.loads(out)["streams"]
    assert streams[0]["codec_name"] == "h264"
    assert (streams[0]["width"], streams[0]["height"]) == (320, 240)
    assert int(streams[0]["nb_read_packets"]) == 150  # 6 s at 25 fps, all three segments


@pytest.fixture(scope="module")
def ffmpeg_fmp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fMP4 HLS (init.mp4 + .m4s segments) made by the ffmpeg CLI."""
    out = tmp_path_factory.mktemp("ffmpeg-fmp4")
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"]
    args += ["-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4"]
    args += ["-hls_fmp4_init_filename", "init.mp4"]
    args += ["-hls_segment_filename", str(out / "seg-%03d.m4s"), str(out / "index.m3u8")]
    subprocess.run(args, check=True, timeout=60)
    return out


async def test_fmp4_and_renditions(start, tmp_path: Path, ffmpeg_hls: Path, ffmpeg_fmp4: Path):
    """A master playlist with a rendition folder of fMP4 segments, read by ffprobe."""
    root = tmp_path / "root"
    folder = root / "default" / "cam-1"
    shutil.copytree(ffmpeg_fmp4, folder / "360p")
    (folder / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x240,CODECS="avc1.64000d"\n'
        "360p/index.m3u8\n"
    )
    server = await start(Directory({CAM: live_status()}), root)
    async with aiohttp.ClientSession() as client:
        for path, content_type, cache in [
            ("index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
            ("360p/index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
            ("360p/init.mp4", "video/mp4", "no-cache"),
            ("360p/seg-000.m4s", "video/mp4", "public, max-age="),
        ]:
            async with client.get(f"{server.url}/streams/default/cam-1/{path}") as r:
                assert r.status == 200, path
                assert r.headers["Content-Type"] == content_type, path
                assert r.headers["Cache-Control"].startswith(cache), path
                assert await r.read() == (folder / path).read_bytes()
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-count_packets",
        f"{server.url}/streams/default/cam-1/index.m3u8",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    video = [s for s in json.loads(out)["streams"] if s["codec_type"] == "video"]
    assert video and video[0]["codec_name"] == "h264"
    assert int(video[0]["nb_read_packets"]) == 100  # 4 s at 25 fps through the rendition


# --- pages and static files --------------------------------------------------


async def test_player_page_uses_local_hlsjs_and_shows_state(server: Server, client) -> None:
    async with client.get(f"{server.url}/streams/site-b/door/") as r:
        page = await r.text()
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert 'src="../../../static/hls.min.js"' in page
    assert 'src="../../../static/player.js"' in page
    assert 'data-src="index.m3u8"' in page
    assert "Reconnecting" in page and "SourceClosed" in page
    assert "&lt;b&gt;now&lt;/b&gt;" in page and "<b>now</b>" not in page  # escaped
    assert "http://" not in page and "https://" not in page and "//cdn" not in page

    async with client.get(f"{server.url}/streams/site-b/door", allow_redirects=False) as r:
        assert r.status == 301
        assert r.headers["Location"] == "/streams/site-b/door/"

    async with client.get(f"{server.url}/streams/default/nothing/") as r:
        assert r.status == 404
        assert "Unknown stream" in await r.text()


async def test_index_page_lists_every_stream(server: Server, client) -> None:
    async with client.get(server.url + "/") as r:
        page = await r.text()
        assert r.status == 200
    assert 'href="streams/default/cam-1/"' in page
    assert 'href="streams/site-b/door/"' in page
    # A live player for the Live stream only.
    assert 'data-src="streams/default/cam-1/index.m3u8"' in page
    assert 'data-src="streams/site-b/door/index.m3u8"' not in page
    assert "h264 320x240" in page and "Reconnecting" in page
    assert "1 Live, 1 Reconnecting" in page


async def test_static_files(server: Server, client) -> None:
    hlsjs = http_server.STATIC_ROOT / "hls.min.js"
    assert hlsjs.is_file(), "hls.js is missing: run scripts/fetch-hlsjs.sh"
    for name, kind in [
        ("player.js", "text/javascript"),
        ("player.css", "text/css"),
        ("hls.min.js", "text/javascript"),
    ]:
        async with client.get(f"{server.url}/static/{name}") as r:
            assert r.status == 200, name
            assert r.headers["Content-Type"].startswith(kind)
            assert await r.read() == (http_server.STATIC_ROOT / name).read_bytes()
    async with client.get(f"{server.url}/static/http_server.py") as r:
        assert r.status == 404


async def test_missing_hlsjs_is_a_clear_503(
    start, hls_root: Path, tmp_path: Path, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = tmp_path / "static"
    static.mkdir()
    shutil.copy(http_server.STATIC_ROOT / "player.js", static / "player.js")
    monkeypatch.setattr(http_server, "STATIC_ROOT", static)
    server = await start(Directory(), hls_root)
    async with client.get(f"{server.url}/static/hls.min.js") as r:
        assert r.status == 503
        assert "scripts/fetch-hlsjs.sh" in await r.text()
    async with client.get(f"{server.url}/static/player.js") as r:
        assert r.status == 200


# --- health, metrics, API ----------------------------------------------------


async def test_health_and_readiness(start, hls_root: Path, client) -> None:
    ready = {"now": False}
    server = await start(Directory(), hls_root, ready=lambda: ready["now"])
    async with client.get(f"{server.url}/healthz") as r:
        assert r.status == 200
    async with client.get(f"{server.url}/readyz") as r:
        assert r.status == 503
    ready["now"] = True
    async with client.get(f"{server.url}/readyz") as r:
        assert r.status == 200


async def test_metrics_parse_and_carry_the_fixed_names(server: Server, client) -> None:
    async with client.get(f"{server.url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(metric: str, /, **labels: str) -> float:
        return samples[(metric, tuple(sorted(labels.items())))]

    cam = {"namespace": "default", "name": "cam-1"}
    door = {"namespace": "site-b", "name": "door"}
    assert value("camstream_streams", phase="Live") == 1
    assert value("camstream_streams", phase="Reconnecting") == 1
    assert value("camstream_streams", phase="Failed") == 0
    assert value("camstream_stream_up", **cam) == 1
    assert value("camstream_stream_up", **door) == 0
    assert value("camstream_stream_phase", phase="Live", **cam) == 1
    assert value("camstream_stream_phase", phase="Connecting", **cam) == 0
    assert value("camstream_stream_phase", phase="Reconnecting", **door) == 1
    assert value("camstream_stream_bytes_in_total", **cam) == 123_456
    assert value("camstream_stream_segments_total", **cam) == 3
    assert value("camstream_stream_reconnects_total", **door) == 5
    assert 1.0 <= value("camstream_stream_segment_age_seconds", **cam) < 30
    # No segment yet: no age sample rather than a made-up one.
    assert ("camstream_stream_segment_age_seconds", tuple(sorted(door.items()))) not in samples
    # Labels: only namespace, name and phase on our metrics.
    ours = [key for key in samples if key[0].startswith("camstream_")]
    assert {label for _, labels in ours for label, _ in labels} == {"namespace", "name", "phase"}
    assert "process_cpu_seconds_total" in text  # the private registry's defaults

    # Each scrape reads the directory afresh.
    server.directory.items[CAM] = replace(live_status(), phase=Phase.FAILED, reason="Gone")
    async with client.get(f"{server.url}/metrics") as r:
        text = await r.text()
    assert 'camstream_stream_up{name="cam-1",namespace="default"} 0.0' in text
    assert 'camstream_streams{phase="Failed"} 1.0' in text


async def test_json_api(server: Server, client) -> None:
    async with client.get(f"{server.url}/api/streams") as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        listing = await r.json()
    assert [s["key"] for s in listing] == ["default/cam-1", "site-b/door"]
    cam = listing[0]
    assert cam["phase"] == "Live" and cam["protocol"] == "rtsp"
    assert cam["codecs"] == {"video": "h264", "audio": None}
    assert cam["size"] == {"width": 320, "height": 240}
    assert cam["playback"] == "/streams/default/cam-1/index.m3u8"
    assert 1.0 <= cam["segment_age"] < 30
    expected_fields = {
        "key", "protocol", "phase", "reason", "message", "since", "reconnects", "bytes_in",
        "segments", "segment_age", "media_sequence", "codecs", "size", "playback",
    }  # fmt: skip
    assert expected_fields <= set(cam)

    async with client.get(f"{server.url}/api/streams/site-b/door") as r:
        door = await r.json()
        assert door["phase"] == "Reconnecting" and door["reason"] == "SourceClosed"
        assert door["segment_age"] is None and door["size"] is None
    async with client.get(f"{server.url}/api/streams/site-b/window") as r:
        assert r.status == 404
        assert (await r.json())["error"] == "unknown stream"
    async with client.get(f"{server.url}/api/streams/Bad/cam") as r:
        assert r.status == 400
    async with client.get(f"{server.url}/api/streams/") as r:
        assert r.status == 404


# --- forwarding to the owner ---------------------------------------------------


async def test_requests_for_another_workers_stream_are_forwarded(
    start, hls_root: Path, tmp_path: Path, client
) -> None:
    owner = await start(
        Directory({CAM: live_status()}), hls_root, host="127.0.0.2", worker_name="worker-b"
    )
    front = await start(
        Directory(),
        tmp_path / "empty-root",
        host="127.0.0.1",
        owner=Owners({CAM: owner.url}),
        worker_name="worker-a",
    )
    folder = hls_root / "default" / "cam-1"
    async with client.get(f"{front.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 200
        assert r.headers["X-Camstream-Served-By"] == "worker-b"
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert await r.read() == (folder / "index.m3u8").read_bytes()

    segment = (folder / "seg-002.ts").read_bytes()
    async with client.get(f"{front.url}/streams/default/cam-1/seg-002.ts") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"].startswith("public, max-age=")
        assert int(r.headers["Content-Length"]) == len(segment)
        assert await r.read() == segment
    async with client.get(
        f"{front.url}/streams/default/cam-1/seg-002.ts", headers={"Range": "bytes=0-187"}
    ) as r:
        assert r.status == 206
        assert await r.read() == segment[:188]
    async with client.head(f"{front.url}/streams/default/cam-1/seg-002.ts") as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(segment)

    async with client.get(f"{front.url}/streams/default/cam-1/") as r:
        assert r.status == 200 and r.headers["X-Camstream-Served-By"] == "worker-b"
        assert 'data-src="index.m3u8"' in await r.text()
    async with client.get(f"{front.url}/api/streams/default/cam-1") as r:
        assert r.status == 200 and (await r.json())["phase"] == "Live"
    # Streams the locator does not place elsewhere are answered here.
    async with client.get(f"{front.url}/api/streams/default/other") as r:
        assert r.status == 404 and r.headers["X-Camstream-Served-By"] == "worker-a"


async def test_forwarding_happens_at_most_once(start, tmp_path: Path, client) -> None:
    """Two workers that each think the other owns the stream do not loop."""
    owners_a, owners_b = Owners(), Owners()
    a = await start(Directory(), tmp_path, host="127.0.0.1", owner=owners_a, worker_name="a")
    b = await start(Directory(), tmp_path, host="127.0.0.2", owner=owners_b, worker_name="b")
    owners_a.urls[CAM] = b.url
    owners_b.urls[CAM] = a.url
    async with client.get(f"{a.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 404
        assert r.headers["X-Camstream-Served-By"] == "b"


async def test_a_worker_with_the_stream_serves_it_when_the_named_owner_has_it_no_more(
    start, hls_root: Path, tmp_path: Path, client
) -> None:
    """Between a handoff's source stopping the stream and the ring naming the target, every
    worker's ring names the source, which answers 404: the target, which has the stream,
    serves its own copy; a worker without it still passes the owner's 404 on."""
    source = await start(Directory(), tmp_path / "gone", host="127.0.0.2", worker_name="source")
    target = await start(
        Directory({CAM: live_status()}), hls_root, owner=Owners({CAM: source.url}),
        worker_name="target",
    )  # fmt: skip
    other = await start(
        Directory(), tmp_path / "none", owner=Owners({CAM: source.url}), worker_name="other"
    )
    async with client.get(f"{target.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 200 and r.headers["X-Camstream-Served-By"] == "target"
        assert await r.read() == (hls_root / "default" / "cam-1" / "index.m3u8").read_bytes()
    async with client.get(f"{other.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 404 and r.headers["X-Camstream-Served-By"] == "source"


def _closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def test_unreachable_owner(start, hls_root: Path, tmp_path: Path, client) -> None:
    dead = f"http://127.0.0.2:{_closed_port('127.0.0.2')}"
    lonely = await start(Directory(), tmp_path / "none", owner=Owners({CAM: dead}))
    async with client.get(f"{lonely.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 502
        body = await r.text()
        assert "owner unreachable" in body and "127.0.0.2" not in body
    # A worker that still has the stream (handoff under way) serves its own copy.
    keeper = await start(
        Directory({CAM: live_status()}), hls_root, owner=Owners({CAM: dead}), worker_name="keeper"
    )
    async with client.get(f"{keeper.url}/streams/default/cam-1/index.m3u8") as r:
        assert r.status == 200 and r.headers["X-Camstream-Served-By"] == "keeper"


# --- a real browser ------------------------------------------------------------


@pytest.fixture
def live_ffmpeg(hls_root: Path) -> Iterator[Path]:
    """A live HLS stream written by the ffmpeg CLI into default/cam-1 (1 s segments)."""
    folder = hls_root / "live" / "cam"
    folder.mkdir(parents=True)
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re"]
    args += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25"]
    args += ["-f", "hls", "-hls_time", "1", "-hls_list_size", "6"]
    args += ["-hls_flags", "delete_segments+temp_file"]
    args += ["-hls_segment_filename", str(folder / "seg-%05d.ts"), str(folder / "index.m3u8")]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        playlist = folder / "index.m3u8"
        # Wait for a few segments, so the player starts on a real live window.
        while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 3):
            assert proc.poll() is None, "ffmpeg exited early"
            assert time.monotonic() < deadline, "ffmpeg wrote no live playlist in 30 s"
            time.sleep(0.2)
        yield folder
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(180)
async def test_player_and_index_pages_play_the_live_stream_in_chromium(
    start, hls_root: Path, live_ffmpeg: Path
) -> None:
    """hls.js from /static, in headless Chromium, plays the ffmpeg live stream
    from the worker's own player page and from the index page's grid."""
    from tests.harness.player import play_many_async  # needs the repository root on sys.path

    live = StreamKey("live", "cam")
    server = await start(Directory({live: live_status(live)}), hls_root, worker_name="worker-a")
    results = await play_many_async(
        {
            "http-player-page": f"{server.url}/streams/live/cam/",
            "http-index-page": server.url + "/",
        },
        seconds=6,
        startup_timeout=60,
    )
    for name, result in results.items():
        assert result.started, (name, result.errors)
        assert result.played >= 4.0, (name, result.played, result.errors)
        assert result.fatal_errors == (), (name, result.fatal_errors)
        assert result.video_size == (320, 240), name
        assert result.longest_freeze < 3.0, (name, result.longest_freeze)
