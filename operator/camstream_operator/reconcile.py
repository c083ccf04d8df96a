"""The ring loop: membership in, ring ConfigMap and pod annotations out.

Who calls this: cli.py runs `RingReconciler.run` beside the labeller and the
admission webhook for the life of the process; it writes only while this
replica holds the leader Lease.

What it reads, it watches (informers, camstream/kubewatch.py): the worker
StatefulSet, its pods, the workers' heartbeat Leases and the ring ConfigMap.
A round runs when one of them changes, and once a second for handoff
timeouts, without any request: the steady state costs no API calls beyond
the watches, whatever the number of workers. One round:

1. membership.from_resources on what the watches hold, with what this process
   has *seen* of the Leases (membership.LeaseSightings) — never on its own
   clock against another machine's;
2. planner.hold_silent (which silent workers may be failed over: not a
   majority, one per interval) and planner.plan_round (pure, deterministic),
   with handoff timeouts judged by what this process has seen of each
   handoff (planner.HandoffSightings), not by the writer's clock;
3. write the ConfigMap only if the document changed (optimistic concurrency:
   a Conflict just means "redo the round");
4. post summarised Events (one per kind and pair of workers) and keep each
   worker pod's `camstream.io/partitions` annotation equal to what it serves.

A round is skipped while any watch is broken: the operator then knows least,
and the data path does not need it (workers keep serving what they have).

When --partitions is larger than the stored ring, a round grows the ring
(handoff.grow: once no handoff is in flight and every stream carries the
larger ring's label, so the switch moves and restarts nothing); a smaller
--partitions is refused once, with an Event.

Heartbeat Leases of workers that are gone for good (no pod, not coming
back, not renewed for a grace) are deleted, so a long-lived cluster does not
accumulate them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from camstream import handoff, kubeapi, kubeevents, retry
from camstream.handoff import Event, EventKind, RingDoc
from camstream.handoff_codec import CodecError, decode_doc
from camstream.kubewatch import Informer, Key
from camstream.wire import HEARTBEAT_LABEL, PARTITIONS_ANNOTATION, encode_ranges

from . import membership, planner
from .config import OperatorConfig
from .leader import LeaderElector
from .metrics import OperatorMetrics
from .ringstore import RingStore

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
LEASE_CLEANUP_EVERY = 30.0  # seconds between sweeps for heartbeat Leases of gone workers


class Labelling(Protocol):
    """What the ring needs of the labeller (labeller.py) before it may grow."""

    def labelled_for(self, partitions: int) -> bool: ...

    def want(self, partitions: int) -> None: ...


def _slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The few fields membership and annotation need (a pod body is ~5 KB)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = [
        c for c in status.get("conditions") or () if c.get("type") in ("Ready", "ContainersReady")
    ]
    return {
        "metadata": {
            "name": meta.get("name"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "annotations": {
                k: v
                for k, v in (meta.get("annotations") or {}).items()
                if k == PARTITIONS_ANNOTATION
            },
        },
        "status": {"phase": status.get("phase"), "podIP": status.get("podIP"), "conditions": ready},
    }


class RingReconciler:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        config: OperatorConfig,
        leader: LeaderElector,
        *,
        labelling: Labelling,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self._api = api
        self._config = config
        self._leader = leader
        self._labelling = labelling
        self._clock = clock
        self._monotonic = monotonic
        self.metrics = metrics
        self.store = RingStore(api, namespace=config.namespace, name=config.ring_configmap)
        self.doc: RingDoc | None = None  # the last document read or written
        self._version: str | None = None  # its resourceVersion
        self._wake = asyncio.Event()
        self._refused_size: int | None = None  # a shrink already refused (and logged)
        self.sightings = membership.LeaseSightings()
        self.handoff_sightings = planner.HandoffSightings()
        self._releases = planner.Releases()
        self._present_since: dict[str, float] = {}
        self._healthy_seen: float | None = None
        self._last_cleanup = 0.0
        self._last_warning = ""
        ns = config.namespace
        self.statefulset: Informer[dict[str, Any]] = Informer(
            api,
            f"/apis/apps/v1/namespaces/{ns}/statefulsets",
            name=f"statefulset {ns}/{config.workers_statefulset}",
            field_selector=f"metadata.name={config.workers_statefulset}",
            on_change=self._sts_changed,
        )
        self.pods: Informer[dict[str, Any]] | None = None  # started once the selector is known
        self.leases: Informer[dict[str, Any]] = Informer(
            api,
            kubeapi.lease_path(ns),
            name=f"heartbeat leases in {ns}",
            label_selector=f"{HEARTBEAT_LABEL}={config.ring_configmap}",
            on_change=self._lease_changed,
        )
        self.ring: Informer[dict[str, Any]] = Informer(
            api,
            kubeapi.configmap_path(ns),
            name=f"ring {ns}/{config.ring_configmap}",
            field_selector=f"metadata.name={config.ring_configmap}",
            on_change=self._ring_changed,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def ring_size(self) -> int | None:
        """The stored ring's number of partitions; None until the ring watch has it."""
        return self.doc.partitions if self.doc is not None else None

    # -- informer callbacks (in the event loop, cheap)

    def wake(self) -> None:
        """Run the next round now (e.g. on becoming leader)."""
        self._wake.set()

    def _lease_changed(self, key: Key, old: Any, new: Any) -> None:
        if new is not None:
            holder = (new.get("spec") or {}).get("holderIdentity")
            version = str((new.get("metadata") or {}).get("resourceVersion", ""))
            if holder:
                self.sightings.observe(str(holder), version, self._monotonic())
        self._wake.set()

    def _ring_changed(self, key: Key, old: Any, new: Any) -> None:
        if new is None:
            self.doc, self._version = None, None
        else:
            try:
                self.doc = decode_doc(new.get("data") or {})
                self._version = str(new["metadata"]["resourceVersion"])
            except CodecError as exc:
                log.error("ring ConfigMap unreadable; waiting for a readable one: %s", exc)
        self._wake.set()

    def _sts_changed(self, key: Key, old: Any, new: Any) -> None:
        if new is not None and self.pods is None:
            labels = ((new.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            self.pods = Informer(
                self._api,
                kubeapi.pod_path(self._config.namespace),
                name=f"worker pods in {self._config.namespace}",
                label_selector=selector,
                keep=_slim_pod,
                on_change=lambda *_: self._wake.set(),
            )
            self._tasks.append(asyncio.create_task(self.pods.run(), name="pods-informer"))
        self._wake.set()

    # -- the loop

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self.statefulset.run(), name="sts-informer"),
            asyncio.create_task(self.leases.run(), name="lease-informer"),
            asyncio.create_task(self.ring.run(), name="ring-informer"),
        ]
        try:
            attempt = 0
            while True:
                try:
                    if self._leader.is_leader:
                        await self.round()
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
                await asyncio.sleep(0.05)  # gather a burst of watch events into one round
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    def _blind(self) -> bool:
        """True while a watch this round depends on is broken or not listed yet."""
        if any(i.healthy_since is None for i in (self.statefulset, self.leases, self.ring)):
            return True
        if not self.statefulset.items:
            return False  # no StatefulSet yet: no workers, nothing to be blind to
        return self.pods is None or self.pods.healthy_since is None

    async def round(self) -> None:
        cfg = self._config
        if not self.ring.synced.is_set():
            return
        if self.doc is None:
            if not self.ring.items:  # else it exists but is unreadable: logged, not overwritten
                await self.store.create(handoff.empty_doc(cfg.partitions))
            return  # planned when the ring watch brings it
        if self._blind():
            return
        now_mono = self._monotonic()
        healthy = max(i.healthy_since or 0.0 for i in (self.leases, self.pods) if i is not None)
        if healthy != self._healthy_seen:
            # A watch was (re)listed: time we could not see counts for nobody.
            self._healthy_seen = healthy
            self.sightings.blind_until(healthy)
            self.handoff_sightings.blind_until(healthy)
        stored, version = self.doc, self._version or ""
        if stored.partitions != cfg.partitions and await self._resize(stored, version):
            return  # the next round plans on the new ring
        pods = list(self.pods.items.values()) if self.pods is not None else []
        leases = list(self.leases.items.values())
        members = membership.from_resources(
            pods,
            leases,
            sightings=self.sightings,
            now=now_mono,
            replicas=self._replicas(),
            present_since=self._present_since,
            rejoin_grace=cfg.rejoin_grace,
            known=stored.table.owners if stored.table is not None else (),
        )
        for name in members.up - members.leaving:
            self._present_since[name] = now_mono
        for name in frozenset(stored.table.owners) if stored.table else frozenset():
            self._present_since.setdefault(name, now_mono)  # first seen: grace from now
        hold = planner.hold_silent(members, self._releases, now=now_mono)
        self._releases = hold.releases
        result = planner.plan_round(
            stored,
            members,
            now=self._clock(),
            policy=cfg.policy,
            held=hold.held,
            warning=hold.warning,
            ages=self.handoff_sightings.ages(stored.handoffs, now_mono),
        )
        if result.warning != self._last_warning:
            self._last_warning = result.warning
            if result.warning:
                log.warning("ring %s: %s", cfg.ring_configmap, result.warning)
                if hold.common_cause:
                    await self._event("Warning", "FailoverFrozen", result.warning)
        up = len(members.up)
        if result.changed:
            if not self._leader.is_leader:
                return  # lost the Lease while computing: write nothing
            try:
                written = await self.store.write(result.doc, version)
            except kubeapi.Conflict:
                log.info("ring %s changed under us; redoing the round", cfg.ring_configmap)
                return  # the ring watch brings the newer document and wakes us
            self.doc, self._version = result.doc, written
            if self.metrics is not None:
                self.metrics.record_round(result.doc, up, result.events, stored.handoffs)
            log.info(
                "ring v%d: %d handoffs in flight, %s",
                result.doc.version,
                len(result.doc.handoffs),
                _summary(result.events) or "no moves",
            )
            await self._post_events(result.events)
        elif self.metrics is not None:
            self.metrics.record_round(stored, up)
        if self.metrics is not None:
            self.metrics.record_members(members, frozen=len(hold.held) if hold.common_cause else 0)
        await self._annotate_pods(pods, self.doc)
        if now_mono - self._last_cleanup > LEASE_CLEANUP_EVERY:
            self._last_cleanup = now_mono
            await self._delete_stale_leases(members, now_mono)

    def _replicas(self) -> int | None:
        for sts in self.statefulset.items.values():
            value = (sts.get("spec") or {}).get("replicas")
            return int(value) if isinstance(value, int) else 1
        return None

    async def _resize(self, doc: RingDoc, version: str) -> bool:
        """Grow the ring to --partitions (True when written); shrinking is refused.

        Growing moves no stream (handoff.grow) and writes no stream: every
        stream already carries the label for the larger ring (the labeller
        adds it first to any that lack it, and the ring waits for that).
        Shrinking would merge partitions owned by different workers, so it is
        not done live: the stored size is kept and said so.
        """
        cfg = self._config
        if cfg.partitions < doc.partitions:
            if self._refused_size == doc.partitions:
                return False  # said once; every round would repeat it
            self._refused_size = doc.partitions
            message = (
                f"--partitions {cfg.partitions} is below the ring's {doc.partitions}: "
                "a live ring only grows"
            )
            log.error("ring %s: %s; keeping %d", cfg.ring_configmap, message, doc.partitions)
            await self._event("Warning", "RingShrinkRefused", message)
            return False
        self._labelling.want(cfg.partitions)
        if doc.handoffs:
            log.info("ring grows to %d partitions once its handoffs settle", cfg.partitions)
            return False
        if not self._labelling.labelled_for(cfg.partitions):
            return False  # the labeller is still adding the larger ring's label
        grown = handoff.grow(doc, cfg.partitions)
        written = await self.store.write(grown, version)
        self.doc, self._version = grown, written
        log.info(
            "ring v%d: grown from %d to %d partitions, no stream moved",
            grown.version,
            doc.partitions,
            grown.partitions,
        )
        grew = f"{doc.partitions} → {grown.partitions} partitions"
        await self._event("Normal", "RingGrown", grew)
        self.wake()
        return True

    def _ring_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self._config.ring_configmap, "namespace": self._config.namespace},
        }

    async def _event(self, type_: str, reason: str, message: str) -> None:
        await kubeevents.post(
            self._api, self._ring_reference(), type_=type_, reason=reason, message=message
        )

    async def _annotate_pods(self, pods: list[dict[str, Any]], doc: RingDoc | None) -> None:
        if doc is None:
            return
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

    async def _delete_stale_leases(self, members: membership.Membership, now: float) -> None:
        """Delete heartbeat Leases of workers that are gone and not coming back."""
        keep = members.existing | members.returning
        for lease in list(self.leases.items.values()):
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            if not holder or holder in keep:
                continue
            seen = self.sightings.seen_at(holder)
            duration = float(spec.get("leaseDurationSeconds") or membership.DEFAULT_LEASE_SECONDS)
            if seen is not None and now - seen <= 2 * duration:
                continue  # renewed lately: a pod we have not seen yet, perhaps
            try:
                await self._api.delete(
                    kubeapi.lease_path(self._config.namespace, str(meta.get("name"))),
                    resource_version=str(meta.get("resourceVersion")),
                )
                self.sightings.forget(holder)
                self._present_since.pop(holder, None)
                log.info("deleted the heartbeat Lease of %s: its worker is gone", holder)
            except (kubeapi.NotFound, kubeapi.Conflict):
                pass  # gone already, or renewed just now

    async def _post_events(self, happened: tuple[Event, ...]) -> None:
        counts = Counter((e.kind, e.source, e.target) for e in happened if e.kind in _NOTABLE)
        for (kind, source, target), count in sorted(counts.items()):
            type_, reason = _NOTABLE[kind]
            await self._event(type_, reason, f"{count} partitions {source or 'nobody'} → {target}")


def _summary(happened: tuple[Event, ...]) -> str:
    counts = Counter(e.kind.value for e in happened)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
