"""The requests that read one stream: its player page, HLS files and JSON status.

Who calls this: server.py routes /streams/{ns}/{name}/... and
/api/streams/{ns}/{name} here. Each handler, in this order:

1. validates the URL into a stream key and a file (paths.py) — a bad path
   is a 400 before anything else;
2. forwards the request to the owning worker if the ring says another one
   owns the stream (proxy.py; the owner then does steps 3-4);
3. checks the viewer (access.py): a refusal is a 401/403/503 with no data;
4. serves: the player page (carrying the viewer's ?token= on its own
   requests), playlists (the same, on every URI, playlist_tokens.py),
   segments, init segments and thumbnails from the stream's folder.

Path validation is in paths.py; the one check that needs the disk (no
symlink leads out of the stream's folder) is `_existing_file` below.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from camstream import wire
from camstream.spec import StreamKey
from camstream_worker.servers.http import pages, paths, playlist_tokens, proxy
from camstream_worker.servers.http.access import Access
from camstream_worker.servers.http.context import FORWARDED, check_viewer, context_of
from camstream_worker.state import stream_dir

# Below the forwarding worker's read timeout (proxy.py) and far below players'
# playlist timeouts (hls.js: 10 s).
PLAYLIST_HOLD_SECONDS = 3.0


def json_error(status: int, error: str, **details: str) -> web.Response:
    return web.json_response({"error": error, **details}, status=status)


def html(text: str, status: int = 200, *, protected: bool = False) -> web.Response:
    headers = {
        "Cache-Control": "private, no-cache" if protected else "no-cache",
        "Content-Security-Policy": pages.CONTENT_SECURITY_POLICY,
    }
    if protected:
        # The page's URL holds the viewer's token: no Referer carries it away.
        headers["Referrer-Policy"] = "no-referrer"
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def key_of(request: web.Request) -> StreamKey:
    try:
        return paths.parse_stream_key(request.match_info["ns"], request.match_info["name"])
    except paths.PathRejected as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


async def forward_or_none(
    request: web.Request, key: StreamKey, path: str
) -> web.StreamResponse | None:
    """Forward to the owner if another worker owns `key`; None means serve locally.

    If the owner cannot be reached, or answers 404, and this worker has the
    stream too (a handoff in progress: the source still, or the target
    already), it serves its own copy rather than failing.
    """
    context = context_of(request)
    if context.owner is None or proxy.FORWARDED_BY_HEADER in request.headers:
        return None  # standalone, or already forwarded once: answer from here
    url = context.owner.owner_url(key)
    if url is None:
        return None
    # Set before forwarding: the owner's headers are sent (and _common_headers
    # runs) inside proxy.forward, and the owner's CORS answer must stand.
    request[FORWARDED] = True
    try:
        return await proxy.forward(
            request.app[proxy.SESSION],
            request,
            url,
            path,
            forwarded_by=context.worker_name,
            own_copy=context.directory.status(key) is not None,
        )
    except proxy.ProxyFailed as exc:
        request[FORWARDED] = False
        if context.directory.status(key) is not None:
            return None
        return json_error(502, "owner unreachable", stream=str(key), detail=str(exc))


async def player_redirect(request: web.Request) -> web.Response:
    key = key_of(request)
    # The player page's links are relative to its folder: it needs the slash.
    # The query (a viewer's ?token=) goes along.
    target = wire.stream_path(key.namespace, key.name)
    if request.query_string:
        target += "?" + request.query_string
    raise web.HTTPMovedPermanently(target)


async def player(request: web.Request) -> web.StreamResponse:
    key = key_of(request)
    forwarded = await forward_or_none(request, key, wire.stream_path(key.namespace, key.name))
    if forwarded is not None:
        return forwarded
    access = await check_viewer(request, key)
    status = context_of(request).directory.status(key)
    if status is None:
        return html(pages.message_page("Unknown stream", f"No stream {key} here."), 404)
    return html(pages.player_page(status, token=access.carry), protected=access.protected)


async def api_one(request: web.Request) -> web.StreamResponse:
    key = key_of(request)
    forwarded = await forward_or_none(request, key, wire.api_stream_path(key.namespace, key.name))
    if forwarded is not None:
        return forwarded
    await check_viewer(request, key)
    status = context_of(request).directory.status(key)
    if status is None:
        return json_error(404, "unknown stream", stream=str(key))
    return web.json_response(pages.status_view(status))


async def hls_file(request: web.Request) -> web.StreamResponse:
    try:
        wanted = paths.parse_hls_file(
            request.match_info["ns"], request.match_info["name"], request.match_info["tail"]
        )
    except paths.PathRejected as exc:
        return json_error(400, str(exc))
    path = wire.stream_path(wanted.key.namespace, wanted.key.name, wanted.relative.as_posix())
    forwarded = await forward_or_none(request, wanted.key, path)
    if forwarded is not None:
        return forwarded
    access = await check_viewer(request, wanted.key)
    context = context_of(request)
    if context.directory.status(wanted.key) is None:
        return json_error(404, "unknown stream", stream=str(wanted.key))
    file = _existing_file(context.hls_root, wanted)
    if file is None and wanted.kind.is_playlist:
        file = await _first_playlist(request, wanted)
    if file is None:
        return json_error(404, "no such file", stream=str(wanted.key))
    cache = _cache_control(wanted.kind, access)
    if wanted.kind.is_playlist and access.carry is not None:
        return _tokened_playlist(file, wanted.kind, cache, access.carry)
    # FileResponse does HEAD, Range, If-Modified-Since and sendfile; a file
    # deleted by the HLS window between here and the open becomes a 404.
    return web.FileResponse(
        file, headers={"Content-Type": wanted.kind.content_type, "Cache-Control": cache}
    )


def _cache_control(kind: paths.FileKind, access: Access) -> str:
    return cache_control(kind.cache_control, access)


def cache_control(cache: str, access: Access) -> str:
    """A protected stream's files are never for shared caches: a CDN or proxy
    that kept one would hand it to viewers without a token."""
    if not access.protected:
        return cache
    cache = cache.replace("public", "private")
    return cache if "private" in cache else f"private, {cache}"


def _tokened_playlist(file: Path, kind: paths.FileKind, cache: str, token: str) -> web.Response:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return json_error(404, "no such file")
    body = playlist_tokens.carry(text, wire.TOKEN_PARAM, token)
    return web.Response(
        body=body.encode("utf-8"),
        headers={
            "Content-Type": kind.content_type,
            "Cache-Control": cache,
            "Referrer-Policy": "no-referrer",
        },
    )


async def _first_playlist(request: web.Request, wanted: paths.HlsFile) -> Path | None:
    """Hold a playlist request for a stream that has none yet, until it appears.

    A stream that just moved here has no playlist until its first segment;
    for a pushed stream that also waits for the camera to reconnect. Players
    treat a 404 on a live playlist as an error and retry only a few times;
    a request held briefly looks to them like a slow server, which they wait for.
    """
    context = context_of(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PLAYLIST_HOLD_SECONDS
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        if context.directory.status(wanted.key) is None:
            return None  # the stream went away meanwhile
        file = _existing_file(context.hls_root, wanted)
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
