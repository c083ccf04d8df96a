"""The edge's SRT passphrases: a bounded cache answered at once, filled asynchronously.

Who calls this: the SRT listener the edge hosts (srt_relay.py) asks `lookup`
in libsrt's receive thread, inside the handshake callback, which must not
block (it would stall every SRT connection of the port); the edge's event
loop runs the lookups (`fetch`: the CameraStream and its Secret through the
API, with the worker's own Secret resolver, cluster/secrets.py).

What `lookup` answers, for a stream:

    cached and fresh ─────────────▶ its Publication (or None: takes no SRT publishers)
    cached, older than TTL ───────▶ the cached answer, and a refresh is started
    not cached (or negative, expired) ─▶ LATER, and a lookup is started
    not cached, MAX_LOOKUPS in flight ─▶ LATER, nothing started ("lookup_busy")

The listener refuses LATER with "try again" (SRT_REJX_DOWN); the caller's
retry finds the answer. None, for an unknown stream or one without a usable
passphrase, is what the listener makes fail exactly like a wrong passphrase,
so nobody can probe which streams exist. Every limit has a number here, and
the edge's metrics count its refusals (camstream_edge_srt_refused).

Negative answers have their own, smaller table: strangers naming streams at
random fill it, never the table of streams that exist. A publisher refused
after its stream ID (a wrong passphrase, or a rotated one not read yet)
`refused` the entry: it is read again, at most once per REFUSED_REFRESH.
Values are never logged; `Publication`'s repr hides the passphrase.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from camstream import kubeapi
from camstream.spec import SpecError, StreamKey, parse_stream
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.servers.srt.hosting import resolve_publication
from camstream_worker.servers.srt.listener import LATER, Later, Publication

__all__ = [
    "MAX_ENTRIES",
    "MAX_LOOKUPS",
    "MAX_NEGATIVE",
    "NEGATIVE_TTL",
    "REFUSED_REFRESH",
    "TTL",
    "PassphraseCache",
    "api_fetch",
]

log = logging.getLogger(__name__)

# Streams whose passphrase is kept: above the SRT streams one edge pod serves
# (1000, the listener's connection cap) with room for ten times as many.
MAX_ENTRIES = 10_000
# Streams known to take no SRT publishers (or unknown), kept apart so
# strangers never evict the table above.
MAX_NEGATIVE = 1_000
# Lookups in flight at once: each is one or two API reads.
MAX_LOOKUPS = 16
# Seconds a passphrase is served before it is read again (in the background:
# the old one serves until the answer comes), so a rotation is picked up.
TTL = 60.0
# Seconds a negative answer stands: a stream just created is found this late at most.
NEGATIVE_TTL = 10.0
# A publisher refused by the key exchange has its stream read again, at most this often.
REFUSED_REFRESH = 5.0

Fetch = Callable[[StreamKey], Awaitable[Publication | None]]


@dataclass(frozen=True, slots=True)
class _Entry:
    publication: Publication | None
    at: float


class PassphraseCache:
    def __init__(
        self,
        fetch: Fetch,
        schedule: Callable[[Callable[[], None]], object],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        max_negative: int = MAX_NEGATIVE,
        max_lookups: int = MAX_LOOKUPS,
        ttl: float = TTL,
        negative_ttl: float = NEGATIVE_TTL,
    ) -> None:
        """`fetch` answers for one stream (in the event loop); `schedule` runs a callable
        there from any thread (loop.call_soon_threadsafe)."""
        self._fetch = fetch
        self._schedule = schedule
        self._clock = clock
        self.max_entries, self.max_negative, self.max_lookups = (
            max_entries,
            max_negative,
            max_lookups,
        )
        self.ttl, self.negative_ttl = ttl, negative_ttl
        self._lock = threading.Lock()
        self._known: OrderedDict[StreamKey, _Entry] = OrderedDict()
        self._negative: OrderedDict[StreamKey, _Entry] = OrderedDict()
        self._in_flight: set[StreamKey] = set()
        self._refused_at: dict[StreamKey, float] = {}
        self.busy = 0  # lookups not started because MAX_LOOKUPS were in flight
        self.failures = 0  # lookups that raised (the API server did not answer)

    # -- libsrt's thread (and tests)

    def lookup(self, key: StreamKey) -> Publication | Later | None:
        """The stream's publication now, None (takes none), or LATER (asked for)."""
        now = self._clock()
        with self._lock:
            entry = self._known.get(key)
            if entry is not None:
                if now - entry.at >= self.ttl:
                    self._start(key)
                return entry.publication
            entry = self._negative.get(key)
            if entry is not None and now - entry.at < self.negative_ttl:
                return None
            if not self._start(key):
                self.busy += 1
            return LATER

    def refused(self, key: StreamKey) -> None:
        """A publisher of `key` failed the key exchange: read it again (rate-limited)."""
        now = self._clock()
        with self._lock:
            if now - self._refused_at.get(key, -REFUSED_REFRESH) < REFUSED_REFRESH:
                return
            if len(self._refused_at) >= self.max_entries:
                self._refused_at.clear()
            self._refused_at[key] = now
            if key in self._known:
                self._start(key)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "passphrases": len(self._known),
                "negative": len(self._negative),
                "lookups": len(self._in_flight),
                "lookup_busy": self.busy,
                "lookup_failures": self.failures,
            }

    def _start(self, key: StreamKey) -> bool:
        """Under the lock: start a lookup of `key` unless one runs or MAX_LOOKUPS do."""
        if key in self._in_flight:
            return True
        if len(self._in_flight) >= self.max_lookups:
            return False
        self._in_flight.add(key)
        self._schedule(lambda: self._spawn(key))
        return True

    # -- the event loop

    def _spawn(self, key: StreamKey) -> None:
        import asyncio

        task = asyncio.get_running_loop().create_task(self._run(key), name=f"srt passphrase {key}")
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    async def _run(self, key: StreamKey) -> None:
        try:
            publication = await self._fetch(key)
        except Exception as exc:  # the API server did not answer: keep what is cached
            with self._lock:
                self.failures += 1
            log.warning("[%s] srt: passphrase lookup failed: %s", key, type(exc).__name__)
            publication = None
            failed = True
        else:
            failed = False
        with self._lock:
            self._in_flight.discard(key)
            if failed:
                return
            self._store(key, publication)

    def _store(self, key: StreamKey, publication: Publication | None) -> None:
        now = self._clock()
        if publication is None:
            self._known.pop(key, None)
            table, cap = self._negative, self.max_negative
        else:
            self._negative.pop(key, None)
            table, cap = self._known, self.max_entries
        table.pop(key, None)
        table[key] = _Entry(publication, now)  # newest last: the oldest is evicted first
        while len(table) > cap:
            table.popitem(last=False)


def api_fetch(api: kubeapi.KubeApi, secrets: SecretResolver) -> Fetch:
    """The cluster's answer for a stream: its CameraStream, then its passphrase Secret (read
    with the worker's resolver: same opt-in label, same cache, same errors without values).

    None: no such stream, not a pushed SRT stream, or no usable passphrase (the
    reason is logged, never the value). An API server that does not answer raises."""

    async def fetch(key: StreamKey) -> Publication | None:
        try:
            body = await api.get(kubeapi.stream_path(key.namespace, key.name))
        except kubeapi.NotFound:
            return None
        try:
            spec = parse_stream(body, key.namespace)
        except SpecError as exc:
            log.info("[%s] srt: takes no publishers: %s", key, exc)
            return None
        # Info, not warning: a stranger may name any stream that exists.
        return await resolve_publication(key, spec, secrets, logging.INFO)

    return fetch


_tasks: set[object] = set()  # running lookups, kept from the garbage collector
