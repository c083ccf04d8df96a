"""The SRT listener hosted beside an engine: its table kept current, its output delivered.

Who calls this: standalone mode (app/standalone.py) starts one `SrtService`
for its engine, a single `Engine` or the process pool (`ShardedEngine`, which
forwards each publisher to the engine process that runs its stream); both
answer `Engines`. The service

- keeps the listener's table (`SrtListener.publish`) equal to the engine's
  SRT push streams, with each passphrase resolved from the stream's Secret in
  the event loop (the listener's handshake callback cannot wait for a
  Secret); it looks at the specs every `REFRESH` seconds and reads the
  Secrets of new or changed streams, of a stream whose publisher was just
  refused (it may know a rotated passphrase), and of all every `RESOLVE`
  seconds;
- moves what the listener's thread reports into the event loop (`_LoopHandler`).

A stream whose passphrase cannot be resolved, or is not 10 to 79 characters
(SRT's rule), is left out of the table: its publishers are refused, and the
stream's own source shows why (sources/srt.py resolves the same Secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from camstream.spec import StreamKey, StreamSpec
from camstream_worker.errors import SecretError
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.servers.srt.edge_leg import EdgeLegPort
from camstream_worker.servers.srt.limits import SrtLimits
from camstream_worker.servers.srt.listener import Publication, SrtListener
from camstream_worker.sources.srt import passphrase_problem, takes_publishers

log = logging.getLogger(__name__)

# Seconds between looks at the engine's specs. A stream that fails over or is
# handed to this worker takes SRT publishers (the edge's relay) only from the
# next look, so this adds to a pushed SRT stream's failover; a look compares
# the specs, cheap beside the 1 s segments it shortens the gap by.
REFRESH = 0.25
# Seconds between reading every stream's passphrase again. A cluster worker
# with 500 SRT streams reads 1.7 Secrets a second for it; a rotated passphrase
# is read at once anyway when a publisher is refused (`stale`).
RESOLVE = 300.0


class Engines(Protocol):
    """What runs the streams (an Engine, or the pool of engine processes)."""

    def adopt_publisher(self, key: StreamKey, peer: str, sock: socket.socket) -> None: ...

    def note(self, key: StreamKey, reason: str, message: str) -> None: ...

    def specs(self) -> Mapping[StreamKey, StreamSpec]: ...


class _LoopHandler:
    """The listener's Handler: hops from its thread into the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, engines: Engines) -> None:
        self._loop = loop
        self._engines = engines
        self.service: SrtService | None = None

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        self._loop.call_soon_threadsafe(self._adopt, key, peer, sock)

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        self._loop.call_soon_threadsafe(self._refused, key, reason, message)

    def _refused(self, key: StreamKey, reason: str, message: str) -> None:
        self._engines.note(key, reason, message)
        if self.service is not None:
            self.service.stale(key)

    def _adopt(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        try:
            self._engines.adopt_publisher(key, peer, sock)
        except Exception:
            log.exception("[%s] srt: the publisher could not be handed over", key)
            sock.close()


class SrtService:
    def __init__(
        self,
        listener: SrtListener,
        engines: Engines,
        secrets: SecretResolver,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self._engines = engines
        self._secrets = secrets
        self._clock = clock
        self._known: dict[StreamKey, StreamSpec] = {}
        self._table: dict[StreamKey, Publication] = {}
        self._stale: set[StreamKey] = set()
        self._resolved_at = -RESOLVE
        self._task: asyncio.Task[None] | None = None
        self.leg: EdgeLegPort | None = None  # with an edge token

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        engines: Engines,
        secrets: SecretResolver,
        limits: SrtLimits | None = None,
    ) -> SrtService:
        handler = _LoopHandler(asyncio.get_running_loop(), engines)
        # Behind an ingest edge, count each camera by the address the edge vouches for.
        token = forwarded.token_from_env()
        listener = SrtListener(host, port, handler, limits=limits, edge_token=token)
        listener.start()
        service = handler.service = cls(listener, engines, secrets)
        try:
            if token:  # the edge's TCP leg, on the same port number (edge_leg.py)
                service.leg = EdgeLegPort(
                    host, listener.port, token=token, lookup=service.publication,
                    deliver=engines.adopt_publisher, stale=service.stale, limits=limits,
                )  # fmt: skip
                await service.leg.start()
            await service.refresh()
        except BaseException:
            await service.close()
            raise
        service._task = asyncio.create_task(service._keep_current())
        return service

    @property
    def port(self) -> int:
        return self.listener.port

    def stats(self) -> dict[str, int]:
        legs = {} if self.leg is None else self.leg.stats()
        return self.listener.stats() | legs

    async def refresh(self) -> None:
        """Resolve the passphrases of new or changed streams, of streams that refused a
        publisher (it may know a rotated passphrase), and of all every RESOLVE seconds."""
        wanted = {k: s for k, s in self._engines.specs().items() if takes_publishers(s)}
        now = self._clock()
        if now - self._resolved_at >= RESOLVE:
            keys, self._resolved_at = set(wanted), now
        else:
            keys = {k for k, s in wanted.items() if self._known.get(k) != s}
            keys |= self._stale & set(wanted)
        gone = set(self._known) - set(wanted)
        self._known, self._stale = wanted, set()
        if not keys and not gone:
            return
        table = {k: v for k, v in self._table.items() if k in wanted}
        for key in keys:
            spec = wanted[key]
            publication = await resolve_publication(key, spec, self._secrets, logging.WARNING)
            if publication is None:
                table.pop(key, None)
            else:
                table[key] = publication
        self._table = table
        self.listener.publish(table)

    def publication(self, key: StreamKey) -> Publication | None:
        """What `key`'s publishers must know, if it takes SRT publishers here."""
        return self._table.get(key)

    def stale(self, key: StreamKey) -> None:
        """A publisher of `key` was refused: read its passphrase again at the next refresh."""
        self._stale.add(key)

    async def _keep_current(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self.refresh()
            except Exception:
                log.exception("srt: could not refresh the stream table")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leg is not None:
            await self.leg.close()
        await asyncio.to_thread(self.listener.close)


async def resolve_publication(
    key: StreamKey, spec: StreamSpec, secrets: SecretResolver, level: int
) -> Publication | None:
    """What the listener needs to take `key`'s publishers, from its spec and Secret; None
    (the reason logged at `level`, never the value) when it takes none. Shared by the
    worker's service and the edge's passphrase cache (edge/passphrases.py)."""
    ref = spec.source.srt.passphrase
    if not takes_publishers(spec) or ref is None:
        return None
    try:
        passphrase = await secrets.get(key.namespace, ref)
    except SecretError as exc:
        log.log(level, "[%s] srt: takes no publishers: %s", key, exc)
        return None
    problem = passphrase_problem(passphrase)
    if problem is not None:
        log.log(level, "[%s] srt: takes no publishers: %s", key, problem)
        return None
    return Publication(passphrase, spec.source.srt.latency_ms)
