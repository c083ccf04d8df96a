"""The fallback labeller: partition labels for CameraStreams the webhook did not label.

Who calls this: cli.py runs `Labeller.run` for the life of the process; it
patches only while this replica leads. The admission webhook
(handlers/handle_admission.py) labels nearly every stream in its own create
request; this catches the rest: streams created while no operator answered
(the webhook's failure policy is Ignore, so creates never wait on us),
streams that predate the webhook, and labels a later apply removed.

Why it is cheap at 100k streams: it watches only the streams that LACK the
label, by label selector (`!camstream.io/partition-<P>`), metadata only, so
the API server does the filtering and this process holds nothing per
labelled stream. Each patch is a merge patch of the labels alone, without a
resourceVersion (the labels are ours; a concurrent change elsewhere cannot
conflict with it): one write per stream, no read first, no retry storm.

Work goes through a queue drained by a few tasks under a request rate cap,
so a burst of 100k unlabelled creates is labelled steadily instead of
opening 100k requests at once; a failed patch is retried with backoff
until it succeeds or the stream is gone. Every `recheck_seconds` a paged
LIST with the same selector re-queues anything that slipped through (level
triggered: a watch event lost in a reconnect is found again, and the LIST
writes nothing when all is well).

Ring growth: the ring asks for the larger size (`want`) and grows only once
`labelled_for` says every stream carries that size's label, so workers that
switch to the new label never lose sight of a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from camstream import kubeapi, partition_labels, retry
from camstream.handoff import RingDoc
from camstream.kubewatch import Informer, Key

from .leader import LeaderElector
from .metrics import OperatorMetrics

log = logging.getLogger("camstream.operator.labeller")

# A failed patch is tried again after 0.5, 1, 2, ... seconds, then every minute.
PATCH_RETRY = retry.Backoff(initial=0.5, cap=60.0, jitter=0.0)


class Labeller:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        leader: LeaderElector,
        *,
        ring_doc: Callable[[], RingDoc | None],
        watch_namespaces: tuple[str, ...] = (),
        concurrency: int = 8,
        rate: float = 200.0,
        recheck_seconds: float = 300.0,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self._api = api
        self._leader = leader
        self._ring_doc = ring_doc
        self._namespaces: tuple[str | None, ...] = watch_namespaces or (None,)
        self._concurrency = concurrency
        self._interval = 1.0 / rate
        self._recheck = recheck_seconds
        self._metrics = metrics
        self._wanted = 0  # a larger ring size the ring waits to grow to
        self._size = 0  # the ring size the informers select for
        self.informers: dict[str | None, Informer[bool]] = {}
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._next_slot = 0.0
        self._changed = asyncio.Event()
        self._leading = asyncio.Event()
        self.labelled = 0  # patches written, for tests and metrics

    def on_leadership(self, leading: bool) -> None:
        """Leadership flipped (LeaderElector.on_change): patch only while leading."""
        if leading:
            self._leading.set()
        else:
            self._leading.clear()

    # -- what the ring asks

    def want(self, partitions: int) -> None:
        if partitions != self._wanted:
            self._wanted = partitions
            self._changed.set()

    def labelled_for(self, partitions: int) -> bool:
        """True when every stream (in the watched namespaces) has the label for `partitions`."""
        return (
            self._size == partitions
            and all(i.synced.is_set() and not i.items for i in self.informers.values())
            and not self._queued
            and not self._busy
        )

    def backlog(self) -> int:
        return sum(len(i.items) for i in self.informers.values())

    # -- loops

    async def run(self) -> None:
        workers = [
            asyncio.create_task(self._drain(), name=f"labeller-{i}")
            for i in range(self._concurrency)
        ]
        last_check = time.monotonic()
        try:
            while True:
                self._retarget()
                if time.monotonic() - last_check > self._recheck and self._leader.is_leader:
                    last_check = time.monotonic()
                    await self._recheck_all()
                if self._metrics is not None:
                    self._metrics.record_labeller(self.backlog(), self.labelled)
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            for task in [*workers, *self._informer_tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._informer_tasks, return_exceptions=True)

    def _retarget(self) -> None:
        """Watch for the streams lacking the label of the size that matters now."""
        doc = self._ring_doc()
        if doc is None:
            return  # no ring yet: nothing to label for
        size = max(doc.partitions, self._wanted)
        if size == self._size:
            return
        for task in self._informer_tasks:
            task.cancel()
        self._size = size
        selector = partition_labels.unlabelled_selector(size)
        self.informers = {
            ns: Informer(
                self._api,
                kubeapi.stream_path(ns) if ns else kubeapi.stream_path(None),
                name=f"unlabelled camerastreams in {ns or 'all namespaces'}",
                label_selector=selector,
                metadata_only=True,
                keep=lambda _obj: True,
                on_change=self._seen,
            )
            for ns in self._namespaces
        }
        self._informer_tasks = [
            asyncio.create_task(i.run(), name=i.name) for i in self.informers.values()
        ]
        log.info("labelling streams that lack %s", partition_labels.label_key(size))

    def _seen(self, key: Key, old: bool | None, new: bool | None) -> None:
        if new is not None:
            self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
        if key not in self._queued and key not in self._busy:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _recheck_all(self) -> None:
        selector = partition_labels.unlabelled_selector(self._size)
        for ns in self._namespaces:
            path = kubeapi.stream_path(ns) if ns else kubeapi.stream_path(None)
            async for page, _ in self._api.list_all(
                path, label_selector=selector, metadata_only=True
            ):
                for obj in page:
                    meta = obj.get("metadata") or {}
                    self._enqueue((str(meta.get("namespace")), str(meta.get("name"))))

    async def _drain(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            if not self._leader.is_leader:
                await self._leading.wait()  # the stand-by keeps its watch warm, writes nothing
            self._busy.add(key)
            try:
                await self._pace()
                await self._label(key)
                self._failures.pop(key, None)
            except kubeapi.KubeError as exc:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = PATCH_RETRY.delay(failures)
                log.warning("labelling %s/%s failed (%s); again in %.1f s", *key, exc, delay)
                asyncio.get_running_loop().call_later(delay, self._enqueue, key)
            finally:
                self._busy.discard(key)
                self._changed.set()

    async def _pace(self) -> None:
        """At most `rate` patches a second across all drain tasks."""
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _label(self, key: Key) -> None:
        doc = self._ring_doc()
        if doc is None:
            raise kubeapi.TransportError("no ring yet")
        namespace, name = key
        labels = partition_labels.labels_for(namespace, name, doc.partitions)
        body: dict[str, Any] = {"metadata": {"labels": labels}}
        try:
            await self._api.patch(kubeapi.stream_path(namespace, name), body)
        except kubeapi.NotFound:
            return  # deleted meanwhile
        self.labelled += 1
