"""What every handler of the worker's HTTP server shares, and the viewer check they all call.

Who calls this: server.py builds one `HttpContext` per worker and stores it
in each application it serves (the public port and, if separate, the admin
port); streams.py and server.py's handlers read it with `context_of`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from camstream import wire
from camstream.spec import StreamKey
from camstream_worker.metrics import streams as metrics
from camstream_worker.servers.http.access import Access, PlaybackAccess, Refused
from camstream_worker.servers.http.cors import CorsPolicy
from camstream_worker.servers.http.listener import HttpCounters
from camstream_worker.servers.http.settings import HttpSettings
from camstream_worker.state import OwnerLocator, StreamDirectory


@dataclass(frozen=True, slots=True)
class HttpContext:
    directory: StreamDirectory
    hls_root: Path
    owner: OwnerLocator | None  # cluster mode, public port only
    ready: Callable[[], bool]
    registry: CollectorRegistry
    snapshot: metrics.StatusSnapshot
    worker_name: str
    settings: HttpSettings
    access: PlaybackAccess
    cors: CorsPolicy
    counters: dict[str, HttpCounters]  # per port: "public", "admin"


CONTEXT = web.AppKey("camstream_http", HttpContext)
# Per request: whether CORS should treat the answer as protected, and
# whether the answer came from the owner (whose CORS headers then stand).
PROTECTED = web.RequestKey("camstream_protected", bool)
FORWARDED = web.RequestKey("camstream_forwarded", bool)


def context_of(request: web.Request) -> HttpContext:
    return request.app[CONTEXT]


async def check_viewer(request: web.Request, key: StreamKey, *, past: bool = False) -> Access:
    """The viewer's Access to stream `key`, or raises the refusal as a response.
    `past`: the request reads the stream's recordings (see PlaybackAccess.mode_of)."""
    try:
        access = await context_of(request).access.check(
            key,
            query_token=request.query.get(wire.TOKEN_PARAM),
            authorization=request.headers.get("Authorization"),
            past=past,
        )
    except Refused as refused:
        request[PROTECTED] = True
        raise refusal(refused, stream=str(key)) from None
    request[PROTECTED] = access.protected
    return access


def refusal(refused: Refused, **details: str) -> web.HTTPException:
    """The JSON answer of a refusal: what is wrong and what to do, no data."""
    body = json.dumps({"error": refused.message, "reason": refused.reason, **details})
    headers = {"Cache-Control": "no-store"}
    if refused.challenge:
        headers["WWW-Authenticate"] = refused.challenge
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        503: web.HTTPServiceUnavailable,
    }
    return kinds[refused.status](text=body, content_type="application/json", headers=headers)
