"""The recordings routes: a stream's past, played and clipped from any worker.

Who calls this: server.py registers the routes (`add_routes`, one line); the
worker's entry points hand over the store (`use_store`) before serving. The
store is shared, so every worker answers for every stream, whether it runs
the stream or not, and even for a stream deleted since (its recordings
expire by their retention). Viewers only ever see these URLs, never the
store's; the worker fetches the byte ranges.

A stream's past is stream data: every route here asks the viewer what the
live playlist asks (access.py), in the same order as streams.py: validate
the URL, forward to the owner when the ring names another worker (only the
owner has the stream's spec, hence its playback policy), check the viewer,
then serve. A VOD playlist answered to a ?token= request repeats the token
on its object URIs (playlist_tokens.py); a protected stream's answers are
`private`, never for a shared cache. The recordings of a stream the worker
does not know are never public by default (access.py, `past`).

    GET /streams/{ns}/{name}/recordings/ranges.json?from=&to=   recorded ranges (gaps between)
    GET /streams/{ns}/{name}/recordings/index.m3u8?from=&to=    VOD playlist (byte ranges, PDT)
    GET /streams/{ns}/{name}/recordings/clip.mp4?from=&to=      MP4 download, streamed
    GET /streams/{ns}/{name}/recordings/objects/{hour}/{object} a group's bytes (Range honoured)

`from` and `to` are ISO 8601 times (2026-12-04T10:00:00Z) or Unix seconds.
Limits, each refused with 400 and a message naming it: ranges.json spans at
most MAX_RANGES_SECONDS, a playlist MAX_VOD_SECONDS, a clip MAX_CLIP_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import time

from aiohttp import web

from camstream import wire
from camstream.recording import layout
from camstream.spec import StreamKey
from camstream.storage import ObjectMissing, StorageError
from camstream.storage.base import ObjectStore
from camstream_worker.outputs.recording import vod
from camstream_worker.outputs.recording.reader import RecordingReader
from camstream_worker.servers.http import paths, playlist_tokens, streams
from camstream_worker.servers.http.access import Access
from camstream_worker.servers.http.context import check_viewer

MAX_RANGES_SECONDS = 7 * 86400
MAX_VOD_SECONDS = 6 * 3600
MAX_CLIP_SECONDS = 3600
LATEST_SECONDS = 32503680000  # 3000-01-01: keys have 13-digit milliseconds
OBJECT_CHUNK = 4 << 20  # a group is sent in pieces of this size, never held whole
DEFAULT_RANGES_SECONDS = 86400
DEFAULT_VOD_SECONDS = 3600
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
OBJECT_CACHE = "public, max-age=86400, immutable"  # groups never change once written

_READER = web.AppKey("recordings", RecordingReader)
_HOUR_RE = re.compile(r"\d{10}")
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")
_PREFIX = "recordings/"


def add_routes(app: web.Application) -> None:
    """Put the routes on `app` (before the catch-all HLS file route)."""
    base = wire.stream_path("{ns}", "{name}", _PREFIX)
    app.router.add_get(base + "ranges.json", _ranges)
    app.router.add_get(base + "index.m3u8", _playlist)
    app.router.add_get(base + "clip.mp4", _clip)
    app.router.add_get(base + "objects/{hour}/{object}", _object)


def use_store(app: web.Application, store: ObjectStore | None) -> None:
    """Serve recordings from `store` (None: this worker keeps none, the routes say so)."""
    if store is not None:
        app[_READER] = RecordingReader(store)


def share_store(app: web.Application, other: web.Application) -> None:
    """Let `other` (the admin port's application) serve `app`'s recordings too."""
    if _READER in app:
        other[_READER] = app[_READER]


async def _guard(request: web.Request, tail: str) -> tuple[StreamKey, Access | web.StreamResponse]:
    """The stream, and either the viewer's Access or the owner's forwarded answer.

    `tail` is rebuilt from validated parts (below the stream's recordings/),
    never copied from the raw request line."""
    key = _key(request)
    path = wire.stream_path(key.namespace, key.name, _PREFIX + tail)
    forwarded = await streams.forward_or_none(request, key, path)
    if forwarded is not None:
        return key, forwarded
    return key, await check_viewer(request, key, past=True)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _reader(request: web.Request) -> RecordingReader:
    reader = request.app.get(_READER)
    if reader is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "recordings are not kept on this worker"}),
            content_type="application/json",
        )
    return reader


def _key(request: web.Request) -> StreamKey:
    try:
        return paths.parse_stream_key(request.match_info["ns"], request.match_info["name"])
    except paths.PathRejected as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


def parse_time(text: str, name: str) -> int:
    """ISO 8601 or Unix seconds, to milliseconds; ValueError naming the parameter."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 time or Unix seconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp()
    if not (math.isfinite(seconds) and 0 <= seconds <= LATEST_SECONDS):
        raise ValueError(f"{name}: not a time between 1970 and 2999")
    return round(seconds * 1000)


def time_window(
    query: dict[str, str], *, default_seconds: int | None, max_seconds: int, now_ms: int
) -> tuple[int, int]:
    """(from, to) in ms from the query; ValueError with a message a person can act on."""
    to_ms = parse_time(query["to"], "to") if "to" in query else now_ms
    if "from" in query:
        from_ms = parse_time(query["from"], "from")
    elif default_seconds is not None:
        from_ms = to_ms - default_seconds * 1000
    else:
        raise ValueError("from: required")
    if "to" not in query and default_seconds is None:
        raise ValueError("to: required")
    if to_ms <= from_ms:
        raise ValueError("to must be after from")
    if to_ms - from_ms > max_seconds * 1000:
        raise ValueError(f"the range may span at most {max_seconds} s")
    return from_ms, to_ms


def _window(request: web.Request, default_seconds: int | None, max_seconds: int) -> tuple[int, int]:
    try:
        return time_window(
            dict(request.query),
            default_seconds=default_seconds,
            max_seconds=max_seconds,
            now_ms=round(time.time() * 1000),
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


def _unavailable(exc: StorageError) -> web.Response:
    return _error(503, f"the recordings store is unavailable: {exc}")


async def _ranges(request: web.Request) -> web.StreamResponse:
    key, access = await _guard(request, "ranges.json")
    if not isinstance(access, Access):
        return access
    reader = _reader(request)
    start, end = _window(request, DEFAULT_RANGES_SECONDS, MAX_RANGES_SECONDS)
    try:
        spans = await reader.ranges(key, start, end)
    except StorageError as exc:
        return _unavailable(exc)
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(spans)]
    return web.json_response(
        {
            "stream": str(key),
            "from": vod.iso(start),
            "to": vod.iso(end),
            "ranges": [_span(a, b) for a, b in spans],
            "gaps": [_span(a, b) for a, b in gaps],
            "recorded_seconds": round(sum(b - a for a, b in spans) / 1000, 3),
        },
        headers={"Cache-Control": streams.cache_control("no-cache", access)},
    )


def _span(start: int, end: int) -> dict[str, object]:
    return {"start": vod.iso(start), "end": vod.iso(end), "start_ms": start, "end_ms": end}


async def _playlist(request: web.Request) -> web.StreamResponse:
    key, access = await _guard(request, "index.m3u8")
    if not isinstance(access, Access):
        return access
    reader = _reader(request)
    start, end = _window(request, DEFAULT_VOD_SECONDS, MAX_VOD_SECONDS)
    try:
        chosen = await reader.timeline(key, start, end)
    except StorageError as exc:
        return _unavailable(exc)
    if not chosen:
        return _error(404, "nothing recorded in this range")
    text = vod.render(chosen)
    headers = {
        "Content-Type": PLAYLIST_TYPE,
        "Cache-Control": streams.cache_control("no-cache", access),
    }
    if access.carry is not None:
        # The object URIs get the viewer's token, as a live playlist's segments do.
        text = playlist_tokens.carry(text, wire.TOKEN_PARAM, access.carry)
        headers["Referrer-Policy"] = "no-referrer"
    return web.Response(text=text, headers=headers)


async def _clip(request: web.Request) -> web.StreamResponse:
    key, access = await _guard(request, "clip.mp4")
    if not isinstance(access, Access):
        return access
    reader = _reader(request)
    start, end = _window(request, None, MAX_CLIP_SECONDS)
    try:
        chosen = await reader.timeline(key, start, end)
    except StorageError as exc:
        return _unavailable(exc)
    if not chosen:
        return _error(404, "nothing recorded in this range")
    name = f"{key.namespace}_{key.name}_{_stamp(start)}_{_stamp(end)}.mp4"
    response = web.StreamResponse(
        headers={
            "Content-Type": "video/mp4",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    # Imported here: clipping needs PyAV, which the front loads only when a clip
    # is asked for (a front with an engine pool otherwise never does).
    from camstream_worker.outputs.recording import clip

    await clip.stream_clip(reader.store, chosen, response.write)
    await response.write_eof()
    return response


def _stamp(ms: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms // 1000))


async def _object(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    hour, name = request.match_info["hour"], request.match_info["object"]
    group = layout.parse_object_name(key, name)
    if not _HOUR_RE.fullmatch(hour) or group is None or layout.hour_of(group.start_ms) != hour:
        return _error(400, "not a recorded object")
    # Validated above: only then may hour and name go into a forwarded path.
    _, access = await _guard(request, f"objects/{hour}/{name}")
    if not isinstance(access, Access):
        return access
    reader = _reader(request)
    object_key = group.object_key
    wanted = _RANGE_RE.fullmatch(request.headers.get("Range", ""))
    try:
        size = await _size(reader.store, object_key)
        if size is None:
            return _error(404, "no such recording")
        start, end, status = 0, size, 200
        if wanted is not None:
            start = int(wanted.group(1))
            end = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
            if start >= end:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
        first = await reader.store.get_range(object_key, start, min(end, start + OBJECT_CHUNK))
    except ObjectMissing:
        return _error(404, "no such recording")
    except StorageError as exc:
        return _unavailable(exc)
    response = web.StreamResponse(status=status)
    response.headers.update(
        {
            "Content-Type": "video/mp2t",
            "Cache-Control": streams.cache_control(OBJECT_CACHE, access),
            "Accept-Ranges": "bytes",
        }
    )
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.content_length = end - start
    await response.prepare(request)
    await response.write(first)
    at = start + len(first)
    while at < end:
        try:
            piece = await reader.store.get_range(object_key, at, min(end, at + OBJECT_CHUNK))
        except StorageError:
            # Headers are gone: cutting the body short is all that is left to say.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write(piece)
        at += len(piece)
    await response.write_eof()
    return response


async def _size(store: ObjectStore, object_key: str) -> int | None:
    async for info in store.objects(object_key):
        if info.key == object_key:
            return info.size
    return None


__all__ = ["add_routes", "parse_time", "share_store", "time_window", "use_store"]
