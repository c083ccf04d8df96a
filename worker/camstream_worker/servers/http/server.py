"""The worker's HTTP server: HLS, the player, the admin surface, health.

Who calls this: standalone mode (app/standalone.py) and cluster mode
(cluster/cli.py) build the app with `make_app` (and `make_admin_app` when
the admin surface has a port of its own) and start it with `serve`; the
tests do the same on 127.0.0.1:0.

Routes:
    GET  /streams/{ns}/{name}/           player page of one stream        } viewer: each
    GET  /streams/{ns}/{name}/{file}     HLS files (playlists, segments,  } stream's own
                                         init, thumbnail, dvr.m3u8)       } auth (access.py),
    GET  /streams/{ns}/{name}/recordings/...  recorded past               } streams.py,
                                         (recordings.py)                  } recordings.py
    GET  /api/streams/{ns}/{name}        one stream's JSON status         }
    GET  /                               index page of all streams        } admin: --admin-port
    GET  /api/streams                    JSON statuses                    } and/or
    GET  /metrics                        Prometheus text format           } --admin-token-file
    GET  /static/{file}                  hls.min.js, player.js, player.css
    GET  /healthz, /readyz               liveness, readiness
    OPTIONS /streams/..., /api/...       CORS preflight
HEAD works wherever GET does; segments honour Range requests.

With the admin surface on its own port (settings.admin_port), the public
port answers 404 for it, and the admin port serves it together with the
stream routes (for the index page's players) and /static, never forwarding.

Every response gets its CORS headers from one place (`_common_headers`,
cors.py), except a forwarded one: the owner already answered them for its
stream. Connection limits and timeouts are listener.py's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from camstream import wire
from camstream_worker.metrics import streams as metrics
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.servers.http import (
    access,
    pages,
    paths,
    proxy,
    recordings,
    streams,
    viewer_jwt,
)
from camstream_worker.servers.http.context import (
    CONTEXT,
    FORWARDED,
    PROTECTED,
    HttpContext,
    context_of,
    refusal,
)
from camstream_worker.servers.http.cors import CorsPolicy
from camstream_worker.servers.http.listener import HttpCounters, bound_port
from camstream_worker.servers.http.listener import serve as _serve
from camstream_worker.servers.http.settings import HttpSettings, JwtSettings
from camstream_worker.state import OwnerLocator, StreamDirectory

__all__ = ["bound_port", "make_admin_app", "make_app", "serve"]

# The player's scripts and styles ship as package data of camstream_worker.
STATIC_ROOT = Path(__file__).resolve().parents[2] / "static"
HLSJS_NAME = "hls.min.js"
PLAYLIST_HOLD_SECONDS = streams.PLAYLIST_HOLD_SECONDS
SERVED_BY_HEADER = proxy.SERVED_BY_HEADER

# CORS applies to what players on other origins fetch: HLS files and the API.
_CORS_PREFIXES = (f"{wire.STREAMS_PREFIX}/", "/api/")
_JWT_KEYS = web.AppKey("jwt_keys", viewer_jwt.JwksKeys)
_PORT = web.AppKey("port_name", str)  # which counters a port updates


def make_app(
    directory: StreamDirectory,
    hls_root: Path,
    *,
    owner: OwnerLocator | None = None,
    ready: Callable[[], bool] = lambda: True,
    registry: CollectorRegistry | None = None,
    worker_name: str | None = None,
    settings: HttpSettings | None = None,
    specs: access.SpecLookup | None = None,
    secrets: SecretResolver | None = None,
) -> web.Application:
    """The worker's aiohttp application (the public port).

    `registry`: where /metrics reads from; the stream collector is added to it.
    Without one, a private registry with the process, platform and GC
    collectors is made (so two apps in one process do not collide).
    `worker_name`: sent in X-Camstream-Served-By (default: the host name,
    which is the pod name in a StatefulSet).
    `settings`: viewer auth, CORS, the admin surface (default: all open, as
    a worker without settings always was); `specs` and `secrets`: where a
    stream's playback policy and its signing key come from.
    """
    settings = settings or HttpSettings()
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    # The collector reads a copy taken on the event loop (see _metrics).
    snapshot = metrics.StatusSnapshot(directory)
    metrics.register_stream_metrics(snapshot, registry)
    jwks = None
    verifier = None
    if settings.jwt is not None:
        keys, jwks = _jwt_keys(settings.jwt)
        verifier = viewer_jwt.JwtVerifier(settings.jwt, keys)
    context = HttpContext(
        directory=directory,
        hls_root=Path(hls_root),
        owner=owner,
        ready=ready,
        registry=registry,
        snapshot=snapshot,
        worker_name=worker_name or socket.gethostname(),
        settings=settings,
        access=access.PlaybackAccess(settings, specs=specs, secrets=secrets, jwt=verifier),
        cors=CorsPolicy(settings.cors_origins),
        counters={"public": HttpCounters()},
    )
    registry.register(_HttpCollector(context))
    app = _application(context, admin=settings.admin_port is None)
    if jwks is not None:
        app[_JWT_KEYS] = jwks
    app.cleanup_ctx.append(_client_sessions)
    return app


def make_admin_app(app: web.Application) -> web.Application:
    """The admin port's application, sharing `app`'s streams, metrics and settings."""
    admin = _application(dataclasses.replace(app[CONTEXT], owner=None), admin=True)
    admin[_PORT] = "admin"
    recordings.share_store(app, admin)
    return admin


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` on host:port (0 = any free port, see `bound_port`) with the
    settings' connection limits."""
    context = app[CONTEXT]
    counters = context.counters.setdefault(app.get(_PORT, "public"), HttpCounters())
    return await _serve(app, host, port, context.settings.limits, counters)


def _jwt_keys(
    settings: JwtSettings,
) -> tuple[viewer_jwt.KeySource, viewer_jwt.JwksKeys | None]:
    if settings.keys_file is not None:
        return viewer_jwt.FileKeys(settings.keys_file), None
    assert settings.jwks_url is not None
    jwks = viewer_jwt.JwksKeys(settings.jwks_url)
    return jwks, jwks


def _application(context: HttpContext, *, admin: bool) -> web.Application:
    app = web.Application(middlewares=[_preflight])
    app[CONTEXT] = context
    app.on_response_prepare.append(_common_headers)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if admin:
        app.router.add_get("/", _admin(_index))
        app.router.add_get("/metrics", _admin(_metrics))
        app.router.add_get(wire.API_STREAMS, _admin(_api_list))
    app.router.add_get(wire.api_stream_path("{ns}", "{name}"), streams.api_one)
    app.router.add_get("/static/{tail:.*}", _static)
    app.router.add_get(wire.stream_path("{ns}", "{name}").rstrip("/"), streams.player_redirect)
    app.router.add_get(wire.stream_path("{ns}", "{name}"), streams.player)
    recordings.add_routes(app)  # before the HLS files: recordings/... is not one of them
    app.router.add_get(wire.stream_path("{ns}", "{name}", "{tail:.+}"), streams.hls_file)
    return app


async def _client_sessions(app: web.Application) -> AsyncIterator[None]:
    # Created only when an owner locator exists: standalone workers never proxy.
    if app[CONTEXT].owner is not None:
        app[proxy.SESSION] = proxy.new_session()
    yield
    if proxy.SESSION in app:
        await app[proxy.SESSION].close()
    if _JWT_KEYS in app:
        await app[_JWT_KEYS].close()


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response gets, set at one place just before sending."""
    context = context_of(request)
    response.headers.setdefault(SERVED_BY_HEADER, context.worker_name)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(_CORS_PREFIXES) and not request.get(FORWARDED):
        cors = context.cors.headers(
            request.headers.get("Origin"), protected=bool(request.get(PROTECTED))
        )
        response.headers.update(cors)
    if response.status >= 400:
        # Never let a cache keep "segment not found" for a segment's long max-age.
        response.headers["Cache-Control"] = "no-store"


def _admin(handler: Handler) -> Handler:
    """The admin surface: the worker's admin token, if it has one."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        token = context_of(request).settings.admin_token
        request[PROTECTED] = token is not None
        if not access.admin_allowed(token, request.headers.get("Authorization")):
            context_of(request).access.refused[access.ADMIN_REFUSAL.reason] += 1
            raise refusal(access.ADMIN_REFUSAL)
        return await handler(request)

    return guarded


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    if context_of(request).ready():
        return web.Response(text="ready\n")
    return web.Response(text="not ready\n", status=503)


async def _metrics(request: web.Request) -> web.Response:
    # Rendering costs ~0.1-0.2 ms per stream (134-223 ms for 1000 streams on
    # the 2-core test machine): done in a thread, the loop keeps serving
    # segments meanwhile. The live directory is read here, on the loop.
    context = context_of(request)
    context.snapshot.take()
    body = await asyncio.to_thread(generate_latest, context.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _api_list(request: web.Request) -> web.Response:
    statuses = sorted(context_of(request).directory.statuses(), key=lambda s: str(s.key))
    return web.json_response([pages.status_view(s) for s in statuses])


async def _index(request: web.Request) -> web.Response:
    context = context_of(request)
    page = pages.index_page(
        context.directory.statuses(),
        protected=lambda key: context.access.mode_of(key) != "none",
    )
    return streams.html(page)


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
            return streams.html(pages.message_page("hls.js missing", text), 503)
        raise web.HTTPNotFound()
    return web.FileResponse(
        file, headers={"Content-Type": kind.content_type, "Cache-Control": kind.cache_control}
    )


@web.middleware
async def _preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS preflight for any /streams/ or /api/ path, before routing: as a
    route it would turn every GET to an unknown path there into a 405."""
    if request.method == "OPTIONS" and request.path.startswith(_CORS_PREFIXES):
        headers = context_of(request).cors.preflight(request.headers.get("Origin"))
        return web.Response(status=204, headers=headers)
    return await handler(request)


class _HttpCollector:
    """camstream_http_* and camstream_playback_refused_total, read at scrape time.
    The one label, `reason`, takes fixed words (access.py): never a token or a path."""

    def __init__(self, context: HttpContext) -> None:
        self._context = context

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        ports = dict(self._context.counters)
        refused: Counter[str] = Counter(dict(self._context.access.refused))
        # Summed over the ports (public and, if separate, admin): a label per
        # port would buy little, and every label is one more thing to vet.
        open_ = GaugeMetricFamily("camstream_http_connections", "Open HTTP connections")
        open_.add_metric([], sum(c.open_connections() for c in ports.values()))
        limited = CounterMetricFamily(
            "camstream_http_connections_refused",
            "HTTP connections refused at the connection limit",
        )
        limited.add_metric([], sum(c.refused for c in ports.values()))
        errors = CounterMetricFamily(
            "camstream_http_accept_errors", "Failed accepts (e.g. out of file descriptors)"
        )
        errors.add_metric([], sum(c.accept_errors for c in ports.values()))
        denied = CounterMetricFamily(
            "camstream_playback_refused",
            "Requests refused by viewer or admin auth, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(refused.items()):
            denied.add_metric([reason], count)
        yield from (open_, limited, errors, denied)
