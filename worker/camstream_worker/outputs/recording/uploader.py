"""The worker's uploader: closed groups from the spool into the object store, in order.

Who calls this: the worker's entry points (standalone and cluster mode) start
one `Uploader` per worker, in the process that serves HTTP; the engine
processes only write the spool (recorder.py), so the store's client and its
credentials live in one process. On shutdown `drain` uploads what it can
before a deadline; what is left is uploaded by the next start on the same
volume.

Each round (every second, or after a backoff while the store fails):

1. groups a killed process left open (older than ABANDONED_SECONDS) are closed;
2. the oldest closed group of each stream is put, streams side by side
   (`concurrency` at once), one at a time per stream: a stream's recording
   reaches the store in order, also when it catches up after an outage;
3. the spool is held under `max_spool_bytes`: the oldest closed groups are
   dropped first, and each stream that lost any is reported (`on_loss`:
   counted in metrics and, in a cluster, one Event per stream and episode,
   never one per group).

The stream's retention (retention.json) is put when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camstream.recording import layout
from camstream.retry import Backoff
from camstream.spec import StreamKey
from camstream.storage import StorageError, StoreRefused
from camstream.storage.base import ObjectStore
from camstream_worker.outputs.recording import spool

log = logging.getLogger(__name__)

# An open group not written to for this long belongs to a process that died.
ABANDONED_SECONDS = 120.0
DEFAULT_SPOOL_BYTES = 2 << 30  # 2 GiB: ~36 camera-hours at 1 Mbit/s


@dataclass(frozen=True, slots=True)
class Loss:
    """What one stream lost when the spool was full."""

    key: StreamKey
    groups: int
    bytes: int
    seconds: float


@dataclass
class UploadStats:
    uploads: int = 0
    uploaded_bytes: int = 0
    failures: int = 0
    dropped_groups: int = 0
    dropped_bytes: int = 0
    spool_bytes: int = 0
    pending_groups: int = 0
    oldest_pending_ms: int | None = None  # start of the oldest group not yet uploaded
    store_up: bool = True
    _clock: Callable[[], float] = field(default=time.time, repr=False)

    def upload_lag(self) -> float:
        """Seconds from the oldest group not yet uploaded to now; 0 when all are up."""
        if self.oldest_pending_ms is None:
            return 0.0
        return max(0.0, self._clock() - self.oldest_pending_ms / 1000)


class Uploader:
    def __init__(
        self,
        spool_root: Path,
        store: ObjectStore,
        *,
        max_spool_bytes: int = DEFAULT_SPOOL_BYTES,
        concurrency: int = 8,
        on_loss: Callable[[Loss], None] | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = 1.0,
    ) -> None:
        self.root = spool_root
        self._store = store
        self._max = max_spool_bytes
        self._concurrency = concurrency
        self._on_loss = on_loss
        self._clock = clock
        self._interval = interval
        self._backoff = Backoff(initial=1.0, cap=30.0)
        self._failed_rounds = 0
        self._retention_sent: dict[Path, float] = {}
        self.stats = UploadStats(_clock=clock)
        spool_root.mkdir(parents=True, exist_ok=True)

    async def run(self) -> None:
        while True:
            ok = await self.round()
            if ok:
                self._failed_rounds = 0
                await asyncio.sleep(self._interval)
            else:
                self._failed_rounds += 1
                await asyncio.sleep(self._backoff.delay(self._failed_rounds))

    async def drain(self, deadline: float) -> None:
        """Upload what is ready until `deadline` (monotonic) or nothing is left."""
        while time.monotonic() < deadline:
            ok = await self.round(close_abandoned=False)
            if not ok or self.stats.pending_groups == 0:
                return

    async def round(self, *, close_abandoned: bool = True) -> bool:
        """One pass, until nothing is waiting; False when the store failed (back off)."""
        if close_abandoned:
            await asyncio.to_thread(self._close_abandoned)
        # The bound holds whether or not the store answers.
        ready = await self._keep_bound(await asyncio.to_thread(spool.ready_groups, self.root))
        ok = await self._put_retention()
        while ok:
            heads: dict[StreamKey, spool.Ready] = {}
            for group in ready:  # oldest first: the first of each stream is its head
                heads.setdefault(group.group.key, group)
            if not heads:
                break
            semaphore = asyncio.Semaphore(self._concurrency)
            results = await asyncio.gather(*(self._put(g, semaphore) for g in heads.values()))
            ok = all(results)
            if len(ready) == len(heads):
                break  # no stream had more than one waiting: all caught up
            ready = await self._keep_bound(await asyncio.to_thread(spool.ready_groups, self.root))
        remaining = await asyncio.to_thread(spool.ready_groups, self.root)
        self.stats.pending_groups = len(remaining)
        self.stats.oldest_pending_ms = remaining[0].group.start_ms if remaining else None
        self.stats.spool_bytes = await asyncio.to_thread(spool.spool_bytes, self.root)
        self.stats.store_up = ok
        return ok

    async def _put(self, ready: spool.Ready, semaphore: asyncio.Semaphore) -> bool:
        async with semaphore:
            try:
                data = await asyncio.to_thread(ready.path.read_bytes)
            except FileNotFoundError:
                return True  # dropped meanwhile
            try:
                await self._store.put(ready.group.object_key, data)
            except StorageError as exc:
                self.stats.failures += 1
                level = logging.ERROR if isinstance(exc, StoreRefused) else logging.WARNING
                log.log(level, "recording upload failed (%s); the spool keeps it", exc)
                return False
            ready.path.unlink(missing_ok=True)
            self.stats.uploads += 1
            self.stats.uploaded_bytes += len(data)
            return True

    async def _put_retention(self) -> bool:
        for key, path in await asyncio.to_thread(spool.retention_files, self.root):
            try:
                mtime = path.stat().st_mtime
                if self._retention_sent.get(path) == mtime:
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                await self._store.put(layout.stream_prefix(key) + layout.RETENTION_OBJECT, data)
            except StorageError:
                self.stats.failures += 1
                return False
            self._retention_sent[path] = mtime
        return True

    async def _keep_bound(self, ready: list[spool.Ready]) -> list[spool.Ready]:
        total = await asyncio.to_thread(spool.spool_bytes, self.root)
        if total <= self._max:
            return ready
        lost: dict[StreamKey, list[spool.Ready]] = {}
        kept = list(ready)
        while kept and total > self._max:
            oldest = kept.pop(0)
            with contextlib.suppress(FileNotFoundError):
                oldest.path.unlink()
            total -= oldest.size
            lost.setdefault(oldest.group.key, []).append(oldest)
        for key, groups in lost.items():
            size = sum(g.size for g in groups)
            seconds = sum(g.group.duration_ms for g in groups) / 1000
            self.stats.dropped_groups += len(groups)
            self.stats.dropped_bytes += size
            log.warning(
                "recording spool full (%d bytes allowed): dropped %d groups (%.0f s) of %s",
                self._max,
                len(groups),
                seconds,
                key,
            )
            if self._on_loss is not None:
                self._on_loss(Loss(key, len(groups), size, seconds))
        return kept

    def _close_abandoned(self) -> None:
        now = self._clock()
        for path, mtime in spool.open_groups(self.root):
            if now - mtime > ABANDONED_SECONDS:
                with contextlib.suppress(OSError):
                    spool.close_abandoned(path)


class RecordingCollector(Collector):
    """The uploader's figures on /metrics (per worker: no per-stream series)."""

    def __init__(self, stats: UploadStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield GaugeMetricFamily(
            "camstream_recording_upload_lag_seconds",
            "Age of the oldest recorded group not yet in the object store (0: none waiting)",
            value=s.upload_lag(),
        )
        yield GaugeMetricFamily(
            "camstream_recording_spool_bytes",
            "Bytes of recordings on this worker's volume waiting for upload",
            value=s.spool_bytes,
        )
        yield GaugeMetricFamily(
            "camstream_recording_pending_groups",
            "Recorded groups waiting for upload",
            value=s.pending_groups,
        )
        yield CounterMetricFamily(
            "camstream_recording_uploads", "Recorded groups put into the store", value=s.uploads
        )
        yield CounterMetricFamily(
            "camstream_recording_uploaded_bytes",
            "Bytes put into the object store",
            value=s.uploaded_bytes,
        )
        yield CounterMetricFamily(
            "camstream_recording_upload_failures",
            "Object store requests of the uploader that failed",
            value=s.failures,
        )
        yield CounterMetricFamily(
            "camstream_recording_dropped_groups",
            "Recorded groups dropped because the spool was full",
            value=s.dropped_groups,
        )
        yield CounterMetricFamily(
            "camstream_recording_dropped_bytes",
            "Recorded bytes dropped because the spool was full",
            value=s.dropped_bytes,
        )
