"""The accept loop of an RTMP port, which survives running out of file descriptors.

Who calls this: the listener (listener.py) and the front (front.py) each run
one `Acceptor` on their listening socket. Viewers' idle HTTP connections and
RTMP clients share one descriptor table; when it is full, accept() fails
with EMFILE. The front's accept loop used to die of that for good, while
/readyz kept saying ready. Here, as asyncio's own server and nginx do, the
loop backs off and retries:

    accepting ──accept() fails: EMFILE/ENFILE/ENOBUFS/ENOMEM──▶ out of resources
        ▲                                                         │ every RETRY_DELAY:
        └──────────── a spare descriptor can be had again ◀───────┘ try dup()

`accepting` is False in between (and until a descriptor could be had
again); the worker's /readyz reports it, so a load
balancer sends new publishers elsewhere. Clients wait in the listen backlog
meanwhile, and are served once descriptors are free. Errors a single client
causes (it reset before we accepted, ...) are skipped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable

__all__ = ["RETRY_DELAY", "Acceptor"]

log = logging.getLogger(__name__)

RETRY_DELAY = 0.5  # nginx's accept_mutex_delay; asyncio waits 1 s
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    def __init__(
        self,
        listener: socket.socket,
        on_client: Callable[[socket.socket, str], None],
        *,
        name: str = "rtmp",
    ) -> None:
        """`on_client(sock, peer)` takes each accepted socket (non-blocking)."""
        self._listener = listener
        self._on_client = on_client
        self._name = name
        self.accepting = True
        self.exhausted = 0  # times accept() ran out of descriptors

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, address = await loop.sock_accept(self._listener)
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    await self._out_of_resources(exc)
                continue  # ECONNABORTED and the like: that client is gone, serve the next
            client.setblocking(False)
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            try:
                self._on_client(client, peer)
            except Exception:
                log.exception("%s: could not take a connection from %s", self._name, peer)
                client.close()

    async def _out_of_resources(self, exc: OSError) -> None:
        self.exhausted += 1
        if self.accepting:
            self.accepting = False
            log.error(
                "%s: cannot accept connections: %s; not ready, retrying every %.1f s",
                self._name,
                os.strerror(exc.errno or 0),
                RETRY_DELAY,
            )
        while True:
            await asyncio.sleep(RETRY_DELAY)
            if _descriptor_available(self._listener):
                # Ready again even if no client comes: a load balancer that
                # saw us unready sends none until we say so. A client still
                # in the backlog fails accept() again at once if we were wrong.
                self._recovered()
                return

    def _recovered(self) -> None:
        self.accepting = True
        log.warning("%s: accepting connections again", self._name)


def _descriptor_available(listener: socket.socket) -> bool:
    """Whether this process could open one more descriptor now."""
    try:
        os.close(os.dup(listener.fileno()))
    except OSError:
        return False
    return True
