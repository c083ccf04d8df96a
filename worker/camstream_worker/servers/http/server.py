"""The worker's HTTP server: HLS files, player pages, health, metrics, JSON API.

Who calls this: the worker's entry points (standalone `camstream run`/`demo`
and the cluster-mode worker) build the app with `make_app` and start it with
`serve`; tests do the same on 127.0.0.1:0.

Routes:
    GET  /                               index page of all streams
    GET  /streams/{ns}/{name}/           player page of one stream
    GET  /streams/{ns}/{name}/{file}     HLS files (playlists, segments, init, thumbnail)
    GET  /static/{file}                  hls.min.js, player.js, player.css
    GET  /api/streams[/{ns}/{name}]      JSON statuses
    GET  /metrics                        Prometheus text format
    GET  /healthz, /readyz               liveness, readiness
    OPTIONS /streams/..., /api/...       CORS preflight
HEAD works wherever GET does; segments honour Range requests.

Per-stream requests (files, player page, one stream's JSON) are forwarded to
the owning worker when the `OwnerLocator` names another one (proxy.py).
Path validation is in paths.py; the one check that needs the disk (no
symlink leads out of the stream's folder) is `_existing_file` below.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from camstream import wire
from camstream.spec import StreamKey
from camstream_worker.metrics import streams as metrics
from camstream_worker.servers.http import pages, paths, proxy, recordings
from camstream_worker.state import OwnerLocator, StreamDirectory, stream_dir

# The player's scripts and styles ship as package data of camstream_worker.
STATIC_ROOT = Path(__file__).resolve().parents[2] / "static"
HLSJS_NAME = "hls.min.js"
# Below the forwarding worker's read timeout (proxy.py) and far below players'
# playlist timeouts (hls.js: 10 s).
PLAYLIST_HOLD_SECONDS = 3.0
SERVED_BY_HEADER = proxy.SERVED_BY_HEADER

_DIRECTORY = web.AppKey("directory", StreamDirectory)
_HLS_ROOT = web.AppKey("hls_root", Path)
_OWNER = web.AppKey("owner", OwnerLocator)
_READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")
_REGISTRY = web.AppKey("registry", CollectorRegistry)
_WORKER = web.AppKey("worker_name", str)
_SESSION = web.AppKey("session", aiohttp.ClientSession)
_SNAPSHOT = web.AppKey("snapshot", metrics.StatusSnapshot)

# CORS applies to what players on other origins fetch: HLS files and the API.
_CORS_PREFIXES = (f"{wire.STREAMS_PREFIX}/", "/api/")
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": f"Content-Length, Content-Range, {SERVED_BY_HEADER}",
}
_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since",
    "Access-Control-Max-Age": "86400",
}


def make_app(
    directory: StreamDirectory,
    hls_root: Path,
    *,
    owner: OwnerLocator | None = None,
    ready: Callable[[], bool] = lambda: True,
    registry: CollectorRegistry | None = None,
    worker_name: str | None = None,
) -> web.Application:
    """The worker's aiohttp application.

    `registry`: where /metrics reads from; the stream collector is added to it.
    Without one, a private registry with the process, platform and GC
    collectors is made (so two apps in one process do not collide).
    `worker_name`: sent in X-Camstream-Served-By (default: the host name,
    which is the pod name in a StatefulSet).
    """
    app = web.Application(middlewares=[_preflight])
    app[_DIRECTORY] = directory
    app[_HLS_ROOT] = Path(hls_root)
    if owner is not None:
        app[_OWNER] = owner
    app[_READY] = ready
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    app[_REGISTRY] = registry
    # The collector reads a copy taken on the event loop (see _metrics).
    snapshot = metrics.StatusSnapshot(directory)
    app[_SNAPSHOT] = snapshot
    metrics.register_stream_metrics(snapshot, registry)
    app[_WORKER] = worker_name or socket.gethostname()

    app.cleanup_ctx.append(_client_session)
    app.on_response_prepare.append(_common_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get(wire.API_STREAMS, _api_list)
    app.router.add_get(wire.api_stream_path("{ns}", "{name}"), _api_one)
    app.router.add_get("/static/{tail:.*}", _static)
    app.router.add_get(wire.stream_path("{ns}", "{name}").rstrip("/"), _player_redirect)
    app.router.add_get(wire.stream_path("{ns}", "{name}"), _player)
    recordings.add_routes(app)  # before the HLS files: recordings/... is not one of them
    app.router.add_get(wire.stream_path("{ns}", "{name}", "{tail:.+}"), _hls_file)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` on host:port (0 = any free port, see `bound_port`)."""
    # A short shutdown: players reconnect anyway, and a worker handing its
    # streams off must not wait a minute for idle keep-alive connections.
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("runner is not listening on a TCP port")


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    # Created only when an owner locator exists: standalone workers never proxy.
    if _OWNER in app:
        app[_SESSION] = proxy.new_session()
    yield
    if _SESSION in app:
        await app[_SESSION].close()


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response gets, set at one place just before sending."""
    response.headers.setdefault(SERVED_BY_HEADER, request.app[_WORKER])
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(_CORS_PREFIXES):
        response.headers.update(_CORS_HEADERS)
    if response.status >= 400:
        # Never let a cache keep "segment not found" for a segment's long max-age.
        response.headers["Cache-Control"] = "no-store"


def _json_error(status: int, error: str, **details: str) -> web.Response:
    return web.json_response({"error": error, **details}, status=status)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": pages.CONTENT_SECURITY_POLICY,
        },
    )


def _owner_url(request: web.Request, key: StreamKey) -> str | None:
    """The other worker to forward to, or None to answer here."""
    owner = request.app.get(_OWNER)
    if owner is None or proxy.FORWARDED_BY_HEADER in request.headers:
        return None  # standalone, or already forwarded once: answer from here
    return owner.owner_url(key)


async def _forward_or_none(
    request: web.Request, key: StreamKey, path: str
) -> web.StreamResponse | None:
    """Forward to the owner if another worker owns `key`; None means serve locally.

    If the owner cannot be reached and this worker still has the stream (a
    handoff in progress), it serves its own copy rather than failing.
    """
    url = _owner_url(request, key)
    if url is None:
        return None
    try:
        return await proxy.forward(
            request.app[_SESSION],
            request,
            url,
            path,
            forwarded_by=request.app[_WORKER],
        )
    except proxy.ProxyFailed as exc:
        if request.app[_DIRECTORY].status(key) is not None:
            return None
        return _json_error(502, "owner unreachable", stream=str(key), detail=str(exc))


def _key(request: web.Request) -> StreamKey:
    try:
        return paths.parse_stream_key(request.match_info["ns"], request.match_info["name"])
    except paths.PathRejected as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[_READY]():
        return web.Response(text="ready\n")
    return web.Response(text="not ready\n", status=503)


async def _metrics(request: web.Request) -> web.Response:
    # Rendering costs ~0.1-0.2 ms per stream (134-223 ms for 1000 streams on
    # the 2-core test machine): done in a thread, the loop keeps serving
    # segments meanwhile. The live directory is read here, on the loop.
    request.app[_SNAPSHOT].take()
    body = await asyncio.to_thread(generate_latest, request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _api_list(request: web.Request) -> web.Response:
    statuses = sorted(request.app[_DIRECTORY].statuses(), key=lambda s: str(s.key))
    return web.json_response([pages.status_view(s) for s in statuses])


async def _api_one(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    forwarded = await _forward_or_none(request, key, wire.api_stream_path(key.namespace, key.name))
    if forwarded is not None:
        return forwarded
    status = request.app[_DIRECTORY].status(key)
    if status is None:
        return _json_error(404, "unknown stream", stream=str(key))
    return web.json_response(pages.status_view(status))


async def _index(request: web.Request) -> web.Response:
    return _html(pages.index_page(request.app[_DIRECTORY].statuses()))


async def _player_redirect(request: web.Request) -> web.Response:
    key = _key(request)
    # The player page's links are relative to its folder: it needs the slash.
    raise web.HTTPMovedPermanently(wire.stream_path(key.namespace, key.name))


async def _player(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    forwarded = await _forward_or_none(request, key, wire.stream_path(key.namespace, key.name))
    if forwarded is not None:
        return forwarded
    status = request.app[_DIRECTORY].status(key)
    if status is None:
        return _html(pages.message_page("Unknown stream", f"No stream {key} here."), 404)
    return _html(pages.player_page(status))


async def _hls_file(request: web.Request) -> web.StreamResponse:
    try:
        wanted = paths.parse_hls_file(
            request.match_info["ns"], request.match_info["name"], request.match_info["tail"]
        )
    except paths.PathRejected as exc:
        return _json_error(400, str(exc))
    path = wire.stream_path(wanted.key.namespace, wanted.key.name, wanted.relative.as_posix())
    forwarded = await _forward_or_none(request, wanted.key, path)
    if forwarded is not None:
        return forwarded
    app = request.app
    if app[_DIRECTORY].status(wanted.key) is None:
        return _json_error(404, "unknown stream", stream=str(wanted.key))
    file = _existing_file(app[_HLS_ROOT], wanted)
    if file is None and wanted.kind.is_playlist:
        file = await _first_playlist(app, wanted)
    if file is None:
        return _json_error(404, "no such file", stream=str(wanted.key))
    # FileResponse does HEAD, Range, If-Modified-Since and sendfile; a file
    # deleted by the HLS window between here and the open becomes a 404.
    return web.FileResponse(
        file,
        headers={
            "Content-Type": wanted.kind.content_type,
            "Cache-Control": wanted.kind.cache_control,
        },
    )


async def _first_playlist(app: web.Application, wanted: paths.HlsFile) -> Path | None:
    """Hold a playlist request for a stream that has none yet, until it appears.

    A stream that just moved here has no playlist until its first segment;
    for a pushed stream that also waits for the camera to reconnect. Players
    treat a 404 on a live playlist as an error and retry only a few times;
    a request held briefly looks to them like a slow server, which they wait for.
    """
    deadline = asyncio.get_running_loop().time() + PLAYLIST_HOLD_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        if app[_DIRECTORY].status(wanted.key) is None:
            return None  # the stream went away meanwhile
        file = _existing_file(app[_HLS_ROOT], wanted)
        if file is not None:
            return file
    return None


def _existing_file(hls_root: Path, wanted: paths.HlsFile) -> Path | None:
    """The regular file for `wanted`, if it exists and really lies in its stream's folder.

    The URL is already clean; this catches the file system lying: a symlink
    (the file, a rendition folder or the stream folder itself) that resolves
    anywhere outside <real root>/<ns>/<name>/.
    """
    try:
        folder = hls_root.resolve(strict=True) / stream_dir(wanted.key)
        real = (folder / wanted.relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not real.is_relative_to(folder) or not real.is_file():
        return None
    return real


async def _static(request: web.Request) -> web.StreamResponse:
    try:
        relative, kind = paths.parse_static_file(request.match_info["tail"])
    except paths.PathRejected:
        raise web.HTTPNotFound() from None
    file = STATIC_ROOT / relative
    if not file.is_file():
        if relative.name == HLSJS_NAME:
            # The one file we do not commit: say how to get it.
            text = (
                "hls.js is not installed on this worker. Run scripts/fetch-hlsjs.sh "
                "(it installs hls.js from the npm registry into "
                "worker/camstream_worker/static/hls.min.js)."
            )
            return _html(pages.message_page("hls.js missing", text), 503)
        raise web.HTTPNotFound()
    return web.FileResponse(
        file, headers={"Content-Type": kind.content_type, "Cache-Control": kind.cache_control}
    )


@web.middleware
async def _preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS preflight for any /streams/ or /api/ path, before routing: as a
    route it would turn every GET to an unknown path there into a 405."""
    if request.method == "OPTIONS" and request.path.startswith(_CORS_PREFIXES):
        return web.Response(status=204, headers=_PREFLIGHT_HEADERS)
    return await handler(request)
