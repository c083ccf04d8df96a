"""Retention of recordings, enforced by the operator's leader.

Who calls this: cli.py starts `RetentionJanitor.run` beside the ring loop
when a recordings store is configured (the chart's recording.store). Only
the replica holding the leader Lease sweeps; the sweep itself
(camstream/recording/janitor.py) is shared code that needs no CameraStream:
each stream's retention travels with its recordings, so the operator keeps
nothing per stream here either.

Time is passed in (`clock`), so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from camstream.recording import janitor
from camstream.storage import StorageError
from camstream.storage.base import ObjectStore

log = logging.getLogger("camstream.operator.janitor")


class JanitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deleted_objects = Counter(
            "camstream_recording_retention_deleted_objects",
            "Recorded objects deleted by retention",
            registry=registry,
        )
        self.deleted_bytes = Counter(
            "camstream_recording_retention_deleted_bytes",
            "Recorded bytes deleted by retention",
            registry=registry,
        )
        self.failures = Counter(
            "camstream_recording_retention_failures",
            "Retention sweeps (or one stream's part of one) that failed",
            registry=registry,
        )
        self.last_sweep = Gauge(
            "camstream_recording_retention_last_sweep_timestamp_seconds",
            "When the last complete retention sweep ended (Unix time)",
            registry=registry,
        )


class RetentionJanitor:
    def __init__(
        self,
        store: ObjectStore,
        *,
        leading: Callable[[], bool],
        metrics: JanitorMetrics | None = None,
        interval: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._leading = leading
        self._metrics = metrics
        self._interval = interval
        self._clock = clock

    async def run(self) -> None:
        while True:
            if self._leading():
                await self.sweep_once()
            await asyncio.sleep(self._interval)

    async def sweep_once(self) -> janitor.SweepResult | None:
        try:
            result = await janitor.sweep(self._store, now_ms=round(self._clock() * 1000))
        except StorageError as exc:
            log.warning("retention sweep failed: %s", exc)
            if self._metrics is not None:
                self._metrics.failures.inc()
            return None
        if self._metrics is not None:
            self._metrics.deleted_objects.inc(result.deleted_objects)
            self._metrics.deleted_bytes.inc(result.deleted_bytes)
            self._metrics.failures.inc(result.failed_streams)
            self._metrics.last_sweep.set(self._clock())
        if result.deleted_objects:
            log.info(
                "retention: %d objects (%d bytes) deleted over %d streams",
                result.deleted_objects,
                result.deleted_bytes,
                result.streams,
            )
        return result
