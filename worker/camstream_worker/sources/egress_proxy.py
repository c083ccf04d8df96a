"""A forward HTTP proxy on loopback through which FFmpeg's HTTP and HTTPS go out.

Who calls this: egress.py starts one per engine process, the first time an
http source opens, and gives its URL to FFmpeg as the `http_proxy` option.
FFmpeg then asks this proxy for every connection an HTTP input makes: the
URL itself, each redirect, each HLS playlist and segment. For each, the
proxy resolves the destination, has it checked (`check`: egress.py's
deny-list), connects to the checked address and then only copies bytes.

FFmpeg speaks two forms to a proxy: plain HTTP as `GET http://host:port/path
HTTP/1.1` (passed on as `GET /path` with the same headers), HTTPS as
`CONNECT host:port` (a tunnel; the TLS inside is between FFmpeg and the
camera). Anything refused or failed is answered `502 Bad Gateway`, never 401
or 403, which FFmpeg would report as wrong credentials.

Bounded: at most 512 connections at once, a request head of at most 16 KiB
read within 10 s, the connection to the destination made within 10 s.
Reused connections (HTTP keep-alive) stay with the destination already
checked: after the head, the proxy only copies bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from camstream_worker.errors import SourceUnreachable

log = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024
# Connections at once: a few per pulled source (the URL, a playlist and a
# segment); more is not FFmpeg, and is closed at once.
MAX_CONNECTIONS = 512
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TUNNEL_OPEN = b"HTTP/1.1 200 Connection established\r\n\r\n"

# (host, port) -> the address to connect to, or SourceUnreachable.
Check = Callable[[str, int], Awaitable[str]]


class BadRequest(ValueError):
    """A request this proxy does not carry (not FFmpeg's)."""


def destination(request_line: str) -> tuple[str, str, int, str]:
    """(method, host, port, origin-form target) of a proxied request line."""
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest("not an HTTP request line")
    method, target, _ = parts
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit():
            raise BadRequest("CONNECT needs host:port")
        return method, host, int(port), ""
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise BadRequest("only absolute http:// targets")
    try:
        number = url.port or 80
    except ValueError:
        raise BadRequest("bad port") from None
    origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return method, url.hostname, number, origin


class EgressProxy:
    def __init__(self, check: Check) -> None:
        self._check = check
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            client_w.close()
            return
        self._connections.add(task)
        upstream: Ends | None = None
        try:
            try:
                head = await asyncio.wait_for(client_r.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
                line, _, rest = head.partition(b"\r\n")
                method, host, port, origin = destination(line.decode("latin-1"))
                address = await self._check(host, port)
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(address, port), CONNECT_TIMEOUT
                )
            except SourceUnreachable:
                client_w.write(_BAD_GATEWAY)  # egress.py logged why
                return
            except (
                ValueError,  # BadRequest among them
                asyncio.LimitOverrunError,
                asyncio.IncompleteReadError,
                TimeoutError,
                OSError,
            ) as exc:
                log.info("egress proxy: request refused (%s)", type(exc).__name__)
                with contextlib.suppress(OSError):
                    client_w.write(_BAD_GATEWAY)
                return
            await _carry(method, origin, rest, (client_r, client_w), upstream)
        finally:
            self._connections.discard(task)
            client_w.close()
            if upstream is not None:
                upstream[1].close()


Ends = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _carry(method: str, origin: str, rest: bytes, client: Ends, upstream: Ends) -> None:
    """Open the tunnel, or pass the request on in origin form; then copy both ways."""
    if method == "CONNECT":
        client[1].write(_TUNNEL_OPEN)
    else:
        upstream[1].write(f"{method} {origin} HTTP/1.1\r\n".encode("latin-1") + rest)
    await asyncio.gather(
        _copy(client[0], upstream[1]), _copy(upstream[0], client[1]), return_exceptions=True
    )


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader ends, then end the writer (half-close); on an error, close it."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
