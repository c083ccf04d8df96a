"""Forwarding a playback request to the worker that owns the stream.

Who calls this: server.py, in cluster mode, when its `OwnerLocator` says
another worker owns the requested stream. Any worker can then answer any
playback URL, so one Ingress (or one Service) in front of all workers is
enough, and a viewer keeps the same URLs across handoffs.

Rules:
- at most one hop: the forwarded request carries FORWARDED_BY_HEADER, and a
  worker never forwards a request that has it (two workers that disagree about
  the owner during a ring change cannot bounce a request between them);
- the body is streamed through, not buffered, with the headers that matter
  for playback (type, length, caching, ranges, validators);
- short timeouts: a stuck owner must not pin the viewer's connection;
- errors name no address: the owner's URL stays out of responses and logs;
- the owner decides who may watch (access.py): the viewer's token goes with
  the request, in its query or its Authorization header, and the owner's
  refusal (401/403 with WWW-Authenticate) and CORS answer come back as they
  are. The token goes to one place only: the owner the ring names, a worker
  of this same deployment, the audience the token was made for. Redirects
  are never followed, so an owner's answer cannot send it anywhere else.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

FORWARDED_BY_HEADER = "X-Camstream-Forwarded-By"
SERVED_BY_HEADER = "X-Camstream-Served-By"

# Request headers a player's request needs at the owner; everything else
# (cookies, hop-by-hop headers) stays. Authorization and Origin go: the owner
# checks the viewer's token and answers CORS for its stream.
_REQUEST_HEADERS = (
    "Accept",
    "Authorization",
    "Origin",
    "Accept-Encoding",
    "Range",
    "If-Range",
    "If-None-Match",
    "If-Modified-Since",
    "User-Agent",
)
# Response headers passed back, CORS included: whether another origin may read
# a stream depends on the stream's viewer auth, which only the owner knows.
_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Content-Range",
    "Accept-Ranges",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Location",
    "Content-Security-Policy",
    "Content-Disposition",  # a recorded clip's file name
    "WWW-Authenticate",
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
    "Vary",
    "Referrer-Policy",
    SERVED_BY_HEADER,
)
CHUNK = 64 * 1024
# Where an application keeps its one pooled client (server.py creates it).
SESSION = web.AppKey("proxy_session", aiohttp.ClientSession)


class ProxyFailed(Exception):
    """The owner could not be reached or did not answer in time (nothing sent yet)."""


def new_session(connect_timeout: float = 2.0, read_timeout: float = 5.0) -> aiohttp.ClientSession:
    """One pooled client per server. Bytes are passed through as they come:
    no decompression, no redirects followed (the viewer follows them)."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout, connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False)


async def forward(
    session: aiohttp.ClientSession,
    request: web.Request,
    owner_url: str,
    path: str,
    forwarded_by: str,
    *,
    own_copy: bool = False,
) -> web.StreamResponse:
    """Send `request` for `path` to the owner and stream its answer back.

    `path` is rebuilt by the caller from validated parts, never copied from the
    raw request line. Raises ProxyFailed if no response could be started, and,
    with `own_copy` (this worker runs the stream too), when the owner answers
    404: for the moment between a handoff's source stopping its stream and
    the ring naming the target, every worker's ring still names the source,
    which no longer has it, while the target (and only it) can serve it.
    """
    url = owner_url.rstrip("/") + path
    if request.query_string:
        url += "?" + request.query_string
    headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
    headers[FORWARDED_BY_HEADER] = forwarded_by
    try:
        upstream = await session.request(
            request.method, url, headers=headers, allow_redirects=False
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        # The exception text would contain the owner's address: log its type only.
        log.warning("forwarding %s to its owner failed: %s", path, type(exc).__name__)
        raise ProxyFailed(type(exc).__name__) from exc
    async with upstream:
        if own_copy and upstream.status == 404:
            raise ProxyFailed("the owner has no such stream or file")
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name in _RESPONSE_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Headers are gone already; all we can do is cut the body short,
                # which the player sees as a failed segment and retries.
                log.warning("owner stopped mid-body for %s: %s", path, type(exc).__name__)
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response
