"""The ring loop: membership in, ring ConfigMap and pod annotations out.

Who calls this: cli.py runs `RingReconciler.run` beside kopf for the life of
the process; it acts only while this replica holds the leader Lease. Each
round (about once a second):

1. list the worker StatefulSet's pods and the workers' heartbeat Leases,
   read the ring ConfigMap;
2. membership.from_resources → planner.plan_round (pure, deterministic);
3. write the ConfigMap only if the document changed (optimistic concurrency:
   a Conflict just means "redo the round");
4. post summarised Events and keep each worker pod's
   `camstream.io/partitions` annotation equal to what it serves (patched only
   on change).

When --partitions is larger than the stored ring, a round grows the ring
instead (handoff.grow: once no handoff is in flight, no stream moves) and the
runtime relabels every stream; a smaller --partitions is refused and logged.

Polling keeps this simple and bounded: two LISTs of N small objects per
second, independent of the number of streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from camstream import handoff, kubeapi, retry
from camstream.handoff import Event, EventKind, RingDoc
from camstream.handoff_codec import CodecError
from camstream.wire import HEARTBEAT_LABEL, PARTITIONS_ANNOTATION, encode_ranges

from . import events, membership, planner
from .config import OperatorConfig
from .leader import LeaderElector
from .metrics import OperatorMetrics
from .ringstore import RingStore, Stored

log = logging.getLogger("camstream.operator.ring")

# After a failed round: 2, 4, 8, then every 10 seconds.
FAILED_ROUND_RETRY = retry.Backoff(initial=2.0, cap=10.0, jitter=0.0)

_NOTABLE = {
    EventKind.ASSIGNED: ("Normal", "PartitionsAssigned"),
    EventKind.FAILOVER: ("Warning", "Failover"),
    EventKind.HANDED_OFF: ("Normal", "HandedOff"),
    EventKind.ROLLED_BACK: ("Warning", "HandoffRolledBack"),
    EventKind.STARTED: ("Normal", "HandoffStarted"),
}


class RingReconciler:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        config: OperatorConfig,
        leader: LeaderElector,
        *,
        clock: Callable[[], float] = time.time,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self._api = api
        self._config = config
        self._leader = leader
        self._clock = clock
        self.metrics = metrics
        self.store = RingStore(
            api,
            namespace=config.namespace,
            name=config.ring_configmap,
            partitions=config.partitions,
        )
        self.doc: RingDoc | None = None  # the last document read or written
        self._wake = asyncio.Event()
        # Called after the ring changed size, to relabel every stream.
        self.on_resize: Callable[[], None] | None = None
        self._refused_size: int | None = None  # a shrink already refused (and logged)

    def wake(self) -> None:
        """Run the next round now (e.g. on becoming leader)."""
        self._wake.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                if self._leader.is_leader:
                    await self.round()
                else:
                    await self._refresh_doc()
                attempt = 0
            except (kubeapi.KubeError, CodecError) as exc:
                attempt += 1
                log.warning("ring round failed (attempt %d): %s", attempt, exc)
            self._wake.clear()
            delay = self._config.interval if attempt == 0 else FAILED_ROUND_RETRY.delay(attempt)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _refresh_doc(self) -> None:
        # The stand-by keeps a recent document so it can take over at once.
        self.doc = (await self.store.read()).doc

    async def round(self) -> None:
        cfg = self._config
        pods = await self._worker_pods()
        leases = await self._api.list(
            kubeapi.lease_path(cfg.namespace),
            label_selector=f"{HEARTBEAT_LABEL}={cfg.ring_configmap}",
        )
        stored = await self.store.read()
        if stored.doc.partitions != cfg.partitions and await self._resize(stored):
            return  # the next round plans on the new ring
        members = membership.from_resources(pods, leases.get("items", []), now=self._clock())
        result = planner.plan_round(stored.doc, members, now=self._clock(), policy=cfg.policy)
        self.doc = stored.doc
        up = len(members.up)
        if result.changed:
            if not self._leader.is_leader:
                return  # lost the Lease while computing: write nothing
            try:
                await self.store.write(result.doc, stored.resource_version)
            except kubeapi.Conflict:
                log.info("ring %s changed under us; redoing the round", cfg.ring_configmap)
                self.wake()
                return
            self.doc = result.doc
            if self.metrics is not None:
                self.metrics.record_round(result.doc, up, result.events, stored.doc.handoffs)
            log.info(
                "ring v%d: %d handoffs in flight, %s",
                result.doc.version,
                len(result.doc.handoffs),
                _summary(result.events) or "no moves",
            )
            await self._post_events(result.events)
        if self.metrics is not None and not result.changed:
            self.metrics.record_round(self.doc, up)
        await self._annotate_pods(pods, self.doc)

    async def _resize(self, stored: Stored) -> bool:
        """Grow the ring to --partitions (True when written); shrinking is refused.

        Growing moves no stream (handoff.grow). Shrinking would merge
        partitions owned by different workers, so it is not done live: the
        stored size is kept and said so.
        """
        cfg, doc = self._config, stored.doc
        if cfg.partitions < doc.partitions:
            if self._refused_size == doc.partitions:
                return False  # said once; every round would repeat it
            self._refused_size = doc.partitions
            log.error(
                "ring %s has %d partitions, --partitions says %d: a live ring only grows; "
                "keeping %d",
                cfg.ring_configmap,
                doc.partitions,
                cfg.partitions,
                doc.partitions,
            )
            await events.post(
                self._api,
                self._ring_reference(),
                type_="Warning",
                reason="RingShrinkRefused",
                message=f"--partitions {cfg.partitions} is below the ring's {doc.partitions}: "
                "a live ring only grows",
            )
            return False
        if doc.handoffs:
            log.info(
                "ring %s grows to %d partitions once its %d handoffs settle",
                cfg.ring_configmap,
                cfg.partitions,
                len(doc.handoffs),
            )
            return False
        grown = handoff.grow(doc, cfg.partitions)
        await self.store.write(grown, stored.resource_version)
        self.doc = grown
        log.info(
            "ring v%d: grown from %d to %d partitions, no stream moved",
            grown.version,
            doc.partitions,
            grown.partitions,
        )
        await events.post(
            self._api,
            self._ring_reference(),
            type_="Normal",
            reason="RingGrown",
            message=f"{doc.partitions} → {grown.partitions} partitions",
        )
        if self.on_resize is not None:
            self.on_resize()
        self.wake()
        return True

    def _ring_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self._config.ring_configmap, "namespace": self._config.namespace},
        }

    async def _worker_pods(self) -> list[dict[str, Any]]:
        cfg = self._config
        try:
            sts = await self._api.get(
                kubeapi.statefulset_path(cfg.namespace, cfg.workers_statefulset)
            )
        except kubeapi.NotFound:
            return []
        labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        listed = await self._api.list(kubeapi.pod_path(cfg.namespace), label_selector=selector)
        prefix = f"{cfg.workers_statefulset}-"
        return [p for p in listed.get("items", []) if str(p["metadata"]["name"]).startswith(prefix)]

    async def _annotate_pods(self, pods: list[dict[str, Any]], doc: RingDoc) -> None:
        served: dict[str, list[int]] = {}
        for p, owner in enumerate(doc.serving):
            served.setdefault(owner, []).append(p)
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") and not served.get(meta["name"]):
                continue  # nothing to say about a pod on its way out
            want = encode_ranges(served.get(meta["name"], ()))
            if (meta.get("annotations") or {}).get(PARTITIONS_ANNOTATION) == want:
                continue
            try:
                await self._api.patch(
                    kubeapi.pod_path(self._config.namespace, meta["name"]),
                    {"metadata": {"annotations": {PARTITIONS_ANNOTATION: want}}},
                )
            except kubeapi.NotFound:
                pass

    async def _post_events(self, happened: tuple[Event, ...]) -> None:
        if not happened:
            return
        involved = self._ring_reference()
        counts = Counter((e.kind, e.source, e.target) for e in happened if e.kind in _NOTABLE)
        for (kind, source, target), count in sorted(counts.items()):
            type_, reason = _NOTABLE[kind]
            where = f"{source or 'nobody'} → {target}"
            await events.post(
                self._api,
                involved,
                type_=type_,
                reason=reason,
                message=f"{count} partitions {where}",
            )


def _summary(happened: tuple[Event, ...]) -> str:
    counts = Counter(e.kind.value for e in happened)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
