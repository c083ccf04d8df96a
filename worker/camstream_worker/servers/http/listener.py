"""The HTTP port: aiohttp's request handling behind an accept loop with limits.

Who calls this: server.py's `serve` (and through it standalone and cluster
mode) to put an application on a port. aiohttp parses and answers requests;
this module decides which connections it gets:

- at most `Limits.max_connections` at once: the next one is answered
  `503 too many connections` and closed, before aiohttp sees it (counted in
  `HttpCounters.refused`);
- a connection must deliver a complete request within `Limits.idle_timeout`
  of opening or of its previous response (aiohttp's keep-alive timer, which
  partial headers do not reset): idle and slow-header clients are cut alike;
- request line and header lines above their sizes are a 400 (aiohttp);
- running out of file descriptors (EMFILE/ENFILE, e.g. idle RTMP and HTTP
  connections sharing the table) pauses accepting for ACCEPT_BACKOFF and
  retries, as asyncio's own server and nginx do, instead of ending the loop.

The accept loop is ours (rather than `loop.create_server`) because asyncio
accepts up to a backlog's worth of connections before any of them reaches
the protocol, so a cap counted there could be overshot by that many.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from camstream_worker.servers.http.settings import Limits

log = logging.getLogger(__name__)

ACCEPT_BACKOFF = 0.5  # seconds without accepting after EMFILE and the like
BACKLOG = 1024
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_REFUSAL_BODY = (
    json.dumps(
        {
            "error": "too many connections to this worker, try again shortly",
            "reason": "connection_limit",
        }
    )
    + "\n"
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 2\r\n"
    b"Cache-Control: no-store\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n\r\n".encode()
    + _REFUSAL_BODY
)


@dataclass
class HttpCounters:
    """What /metrics says about a port (updated by its site)."""

    refused: int = 0
    accept_errors: int = 0
    open_connections: Callable[[], int] = lambda: 0


class CappedSite(web.BaseSite):
    """A TCP site with a connection cap and an accept loop that survives EMFILE."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        counters: HttpCounters | None = None,
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._max = max_connections
        self.counters = counters if counters is not None else HttpCounters()
        self._listener: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._listener is not None:
            return int(self._listener.getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server(
            (self._host, self._port), family=family, backlog=self._backlog
        )
        listener.setblocking(False)
        self._listener = listener
        server = self._runner.server
        assert server is not None
        self.counters.open_connections = lambda: len(server.connections)
        self._task = asyncio.create_task(self._accept_loop(), name=f"http-accept-{self.port}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            self._listener.close()
        await super().stop()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None and self._listener is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(self._listener)
            except OSError as exc:
                self.counters.accept_errors += 1
                code = errno.errorcode.get(exc.errno or 0, "unknown error")
                self._warn(f"accepting HTTP connections failed ({code})")
                if exc.errno in _OUT_OF_RESOURCES:
                    await asyncio.sleep(ACCEPT_BACKOFF)
                continue
            if len(server.connections) >= self._max:
                self.counters.refused += 1
                self._warn(f"HTTP connection limit ({self._max}) reached: refusing")
                _refuse(conn)
                continue
            try:
                await loop.connect_accepted_socket(server, conn)
            except OSError:
                conn.close()

    def _warn(self, text: str) -> None:
        """Once a minute at most: a flood is one line, the counters say how big."""
        now = time.monotonic()
        if now - self._last_warning >= 60.0:
            self._last_warning = now
            log.warning("%s (refused so far: %d)", text, self.counters.refused)


def _refuse(conn: socket.socket) -> None:
    """Answer 503 and close, without waiting for the client."""
    conn.setblocking(False)
    with contextlib.suppress(OSError):
        # Read what already arrived, so closing does not reset the connection
        # before the client could read the answer.
        conn.recv(65536)
    with contextlib.suppress(OSError):
        conn.send(_REFUSAL)
        conn.shutdown(socket.SHUT_WR)
    conn.close()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    limits: Limits | None = None,
    counters: HttpCounters | None = None,
) -> web.AppRunner:
    """Start `app` on host:port (0 = any free port, see `bound_port`)."""
    limits = limits or Limits()
    runner = web.AppRunner(
        app,
        # A short shutdown: players reconnect anyway, and a worker handing its
        # streams off must not wait for idle keep-alive connections.
        shutdown_timeout=2.0,
        keepalive_timeout=limits.idle_timeout,
        max_line_size=limits.max_line_bytes,
        max_field_size=limits.max_field_bytes,
        max_headers=limits.max_headers,
    )
    await runner.setup()
    site = CappedSite(runner, host, port, max_connections=limits.max_connections, counters=counters)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on."""
    for site in runner.sites:
        if isinstance(site, CappedSite):
            return site.port
    raise RuntimeError("runner is not listening on a TCP port")
