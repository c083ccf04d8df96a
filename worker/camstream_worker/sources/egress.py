"""The one way out for pulled sources: every address is checked against the policy first.

Who calls this: the engine makes one `Egress` per process (with the process's
`SourcePolicy`, policy.py) and hands it to every source in its Context;
rtsp.py asks it for the checked address to connect to, http.py for the
address of its forward proxy (egress_proxy.py), file.py whether a path may
be read.

Checking a host name and then letting FFmpeg resolve it again would leave a
gap: the name may resolve elsewhere the second time (DNS rebinding), an HTTP
server may redirect, an HLS playlist may list segments anywhere. So nothing
FFmpeg connects to is resolved by FFmpeg:

- RTSP: the URL handed to FFmpeg carries the checked IP address instead of
  the host name (`pinned_url`). What is left: an RTSP server may redirect
  (FFmpeg follows RTSP 3xx itself) or name another address for RTP over UDP;
  the chart's egress NetworkPolicy is the fence for those.
- HTTP and HTTPS (and every playlist, segment and redirect behind them): FFmpeg
  goes through our forward proxy on loopback, which resolves and checks each
  destination and connects to the checked address. FFmpeg bypasses a proxy
  for the hosts in the `no_proxy` environment variable, so that variable is
  removed from the engine process when the Egress is made (before any source
  thread runs).

A refused address raises SourceUnreachable, the same uniform error as a
camera that is down (errors.py: no SSRF oracle); the log says which.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from urllib.parse import urlsplit, urlunsplit

from camstream_worker.errors import SourceUnreachable
from camstream_worker.sources.egress_proxy import EgressProxy
from camstream_worker.sources.policy import IPAddress, SourcePolicy

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


class Egress:
    def __init__(self, policy: SourcePolicy) -> None:
        self.policy = policy
        self._proxy: EgressProxy | None = None
        self._starting = asyncio.Lock()
        for variable in ("no_proxy", "NO_PROXY"):
            if os.environ.pop(variable, None) is not None:
                log.info("%s removed: pulled sources always go through the egress check", variable)

    async def address_for(self, host: str, port: int) -> str:
        """The address to connect to for `host`: resolved once, checked; else SourceUnreachable.

        Refused when any address the name resolves to is denied: a name that
        resolves both to a camera and to the metadata service is not a camera.
        """
        try:
            addresses = await _resolve(host, port)
        except SourceUnreachable as exc:
            log.info("egress to %s:%d: %s", host, port, exc.detail)
            raise
        denied = [a for a in addresses if self.policy.denies(a)]
        if denied:
            log.info("egress to %s:%d refused: %s is in the deny-list", host, port, denied[0])
            raise SourceUnreachable(f"{host} resolves to an address in the deny-list")
        return str(addresses[0])

    async def pinned_url(self, url: str) -> str:
        """`url` with its host replaced by the checked address (RTSP)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        address = await self.address_for(host, port)
        literal = f"[{address}]" if ":" in address else address
        netloc = literal + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    async def http_proxy(self) -> str:
        """The URL of this process's egress proxy for FFmpeg's http_proxy option."""
        async with self._starting:
            if self._proxy is None:
                proxy = EgressProxy(self.address_for)
                await proxy.start()
                self._proxy = proxy
            return self._proxy.url

    async def close(self) -> None:
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SourceUnreachable(f"{host} did not resolve ({type(exc).__name__})") from None
    addresses = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope is not part of the address
        addresses.append(ipaddress.ip_address(text))
    if not addresses:
        raise SourceUnreachable(f"{host} resolved to no address")
    return addresses
