"""The worker's cluster agent: ring in, pipelines and confirmations out.

Who calls this: cli.py (`camstream worker`) builds one `Agent` around the
engine and runs it for the life of the pod.

One reconcile pass (triggered by any change: ring ConfigMap, a watched
CameraStream, a stream's phase in the engine) does, in order:

1. decode the ring document; the partitions to run are those served here plus
   those being handed over to here (camstream.handoff.partitions_for);
2. keep the CameraStream watches' label selectors equal to those partitions
   (camstream/partition_labels.py: the label of the ring's size, `in` lists
   of at most 1,024 values, one watch per bucket of partitions, so gaining a
   partition re-lists one bucket, and a grown ring only switches label);
3. hand the engine the desired streams (engine.apply), with the media
   sequence each new stream starts at (continuing above the previous owner,
   by the cluster's clock: clock.py);
4. for a stream started in a handoff whose partition the ring now says this
   worker serves, fence the old owner and follow on (fencing.py), at most
   once per stream start;
5. announce on the heartbeat Lease which incoming handoffs are live here;
6. write the status of the streams this worker serves, where it changed
   (all of their status: the operator writes none).

Graceful leave (`leave`, on SIGTERM): announce leaving, keep serving while the
operator moves every partition away (make before break), and return once
nothing is served here any more or the deadline is near.

Without the API server (an outage, or this worker's link cut): nothing
stops. The last ring stays in force, streams keep running and serving
viewers, the heartbeat and the watches retry (the ring's every 2 s at most,
and all of them at once when a heartbeat gets through again). A worker
cannot tell a cut link from an outage; if it was cut, the operator failed
its partitions over meanwhile, and the first ring it reads again says so
(desired.superseded): it stops those streams and counts for how long they
may have run beside the new owner's (`double_serving_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from camstream import handoff, kubeapi, partition_labels
from camstream.handoff import RingDoc
from camstream.handoff_codec import CodecError, decode_doc
from camstream.kubewatch import Informer, Key
from camstream.spec import StreamKey, StreamSpec
from camstream.wire import playlist_path
from camstream_worker.outputs.hls.sequence import SequenceStart
from camstream_worker.state import StreamStatus

from . import desired as plan
from . import status
from .clock import ClusterClock
from .fencing import Fencing
from .heartbeat import Heartbeat

log = logging.getLogger("camstream.worker.cluster")

WatchKey = tuple[str | None, int]  # (namespace or None for all, bucket of partitions)


@dataclass
class _Watch:
    """One stream watch and, while it lists for the first time, the watch it replaces.

    Replacing a selector must not make streams vanish for the moment the new
    list takes: the old watch's items stand in until the new one is synced
    (make before break, for watches).
    """

    informer: Informer[dict[str, Any]]
    task: asyncio.Task[None]
    size: int  # ring size its selector was made for
    partitions: frozenset[int]
    # What the replaced watch held and had listed whole, until this one has.
    previous: dict[Key, dict[str, Any]]
    previous_size: int = 0
    previous_partitions: frozenset[int] = frozenset()

    def items(self) -> dict[Key, dict[str, Any]]:
        return self.informer.items if self.informer.synced.is_set() else self.previous

    def cover(self) -> tuple[int, frozenset[int]]:
        """(ring size, partitions) whose streams `items()` holds whole."""
        if self.informer.synced.is_set():
            return self.size, self.partitions
        return self.previous_size, self.previous_partitions


class EngineLike(Protocol):
    async def apply(
        self,
        desired: Mapping[StreamKey, StreamSpec],
        *,
        start_sequences: Mapping[StreamKey, SequenceStart] | None = None,
    ) -> None: ...

    def status(self, key: StreamKey) -> StreamStatus | None: ...

    def on_change(self, callback: Callable[[StreamStatus], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this worker is, from the pod (downward API env)."""

    pod_name: str
    pod_namespace: str
    pod_ip: str


class Agent:
    def __init__(
        self,
        *,
        api: kubeapi.KubeApi,
        engine: EngineLike,
        identity: Identity,
        ring_namespace: str,
        ring_name: str,
        http_port: int,
        watch_namespaces: tuple[str, ...] = (),
        heartbeat_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        cluster_clock: ClusterClock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        push_via_edge: bool = False,
        fencing: Fencing,
    ) -> None:
        """`push_via_edge`: pushed cameras reach the workers through an ingest edge
        (the chart's edge is on), so a handoff waits for their publisher (desired.py);
        `fencing`: asks a handoff's old owner to stop publishing (fencing.py)."""
        self._api = api
        self._fencing = fencing
        # Streams started ahead of a previous owner still writing (a handoff):
        # that owner's address, until the ring says we serve them (then fenced).
        self._fence_from: dict[StreamKey, str] = {}
        self._fences: set[asyncio.Task[None]] = set()
        self._push_via_edge = push_via_edge
        self._engine = engine
        self.me = identity.pod_name
        self._http_port = http_port
        self._clock = clock
        self._cluster_clock = cluster_clock
        self._monotonic = monotonic
        # Per stream started here: cluster time minus our wall clock, at least,
        # when it started (its lead is recorded against the cluster's clock).
        self._lead_offsets: dict[StreamKey, float] = {}
        # Stream-seconds our copies may have run after the ring moved their
        # partitions away while we could not see it (a counter, /metrics).
        self.double_serving_seconds = 0.0
        self._kick = asyncio.Event()
        self.doc: RingDoc | None = None
        self.leaving = False
        self._desired: dict[StreamKey, StreamSpec] = {}
        self._namespaces: tuple[str | None, ...] = watch_namespaces or (None,)
        self._watches: dict[WatchKey, _Watch] = {}
        self._session: aiohttp.ClientSession | None = None
        self.heartbeat = Heartbeat(
            api,
            namespace=ring_namespace,
            worker=self.me,
            ring_name=ring_name,
            period=heartbeat_seconds,
        )
        self.ring: Informer[dict[str, Any]] = Informer(
            api,
            kubeapi.configmap_path(ring_namespace),
            field_selector=f"metadata.name={ring_name}",
            on_change=lambda *_: self.kick(),
            on_sync=self.kick,  # a re-list after a break: report what changed meanwhile
            name=f"ring {ring_namespace}/{ring_name}",
            # One small object: retried often, so a worker whose link comes
            # back learns at once what the ring decided meanwhile.
            max_backoff=2.0,
        )
        self.heartbeat.on_recovered = self._api_back
        engine.on_change(self._stream_changed)

    # -- read side

    def ready(self) -> bool:
        """Readiness: heartbeating, ring known, not leaving."""
        return self.heartbeat.written.is_set() and self.ring.synced.is_set() and not self.leaving

    def current_doc(self) -> RingDoc | None:
        return self.doc

    # -- loops

    def kick(self) -> None:
        self._kick.set()

    def _stream_changed(self, _status: StreamStatus) -> None:
        self._kick.set()

    def _api_back(self) -> None:
        """A heartbeat got through after failures: every broken watch retries now."""
        self.ring.retry_now()
        for watch in self._watches.values():
            watch.informer.retry_now()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        tasks = [
            asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
            asyncio.create_task(self.ring.run(), name="ring-informer"),
        ]
        try:
            while True:
                await self._kick.wait()
                self._kick.clear()
                await asyncio.sleep(0.05)  # gather a burst of events into one pass
                self._kick.clear()
                try:
                    await self.reconcile()
                except kubeapi.KubeError as exc:
                    log.warning("reconcile: %s", exc)
                    self._kick.set()
                    await asyncio.sleep(1.0)
        finally:
            for task in [*tasks, *self._fences, *(w.task for w in self._watches.values())]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._session.close()

    async def leave(self, deadline: float) -> bool:
        """Announce leaving and wait until nothing is served here (True) or `deadline`."""
        self.leaving = True
        self.heartbeat.announce(leaving=True)
        log.info("%s leaving: waiting for its partitions to be handed off", self.me)
        while time.monotonic() < deadline:
            doc = self.doc
            if doc is not None and handoff.settled(doc, self.me):
                log.info("%s: all partitions handed off", self.me)
                return True
            if doc is None and self.ring.synced.is_set():
                return True
            await asyncio.sleep(0.2)
        log.warning("%s: leave deadline reached with partitions still here", self.me)
        return False

    # -- one pass

    async def reconcile(self) -> None:
        doc = self._read_doc()
        previous, self.doc = self.doc, doc
        moved_away = plan.superseded(previous, doc, self.me)
        mine = handoff.partitions_for(doc, self.me) if doc is not None else frozenset()
        size = doc.partitions if doc is not None else 0
        self._watch(mine, size)
        covered = self._covered(mine, size)
        bodies = [
            b
            for b in self._bodies()
            if doc is not None and plan.partition_of(plan.key_of(b), doc.partitions) in covered
        ]
        wanted = plan.streams_to_run(doc, self.me, bodies)
        stopping: list[StreamKey] = []
        if moved_away and doc is not None:
            wanted, stopping = self._stop_superseded(doc, moved_away, wanted)
        leads = {plan.key_of(b): plan.recorded_lead(b) for b in bodies}
        starts = await self._start_sequences(doc, wanted, leads)
        await self._engine.apply(wanted, start_sequences=starts)
        if doc is not None:
            self._fence_served(doc, wanted)
        if stopping:
            self._count_double_serving(stopping)
        self._desired = wanted
        for key in [k for k in self._lead_offsets if k not in wanted]:
            del self._lead_offsets[key]
        reported = {plan.key_of(b): (b.get("status") or {}).get("phase") for b in bodies}
        confirmed = plan.confirmations(
            doc,
            self.me,
            wanted,
            engine_status=self._engine.status,
            reported_phase=reported.get,
            covered=covered,
            push_via_edge=self._push_via_edge,
        )
        self.heartbeat.announce(confirmed=confirmed)
        if self.ring.healthy_since is not None:
            await self._report(doc, bodies)
        # else: our ring may be stale (the watch broke: an outage, or our link
        # is cut, and the ring may have moved our partitions meanwhile); a
        # status written from it could undo the new owner's. The re-list kicks.

    def _fence_served(self, doc: RingDoc, wanted: Mapping[StreamKey, StreamSpec]) -> None:
        """Fence the old owners of the handed-over streams this worker serves now."""
        for key, address in list(self._fence_from.items()):
            if key not in wanted:
                del self._fence_from[key]  # rolled back, or gone: stopped here
            elif doc.serving[plan.partition_of(key, doc.partitions)] == self.me:
                del self._fence_from[key]
                task = asyncio.create_task(self._fencing.follow(key, address), name=f"fence {key}")
                self._fences.add(task)  # keep a reference until it is done
                task.add_done_callback(self._fences.discard)

    def _stop_superseded(
        self, doc: RingDoc, moved_away: frozenset[int], wanted: dict[StreamKey, StreamSpec]
    ) -> tuple[dict[StreamKey, StreamSpec], list[StreamKey]]:
        """Leave out our copies of streams the ring failed over while we could not see it.

        Returns what to run and the copies to stop. Those the ring is handing
        back to us are left out of this pass only: the next one starts them
        afresh, above the current owner.
        """
        ran = [k for k in self._desired if plan.partition_of(k, doc.partitions) in moved_away]
        log.warning(
            "%s: the ring moved %d partitions away while this worker could not see it; "
            "stopping its %d streams there",
            self.me,
            len(moved_away),
            len(ran),
        )
        restart = {k for k in ran if k in wanted}
        if restart:
            self._kick.set()
        return {k: spec for k, spec in wanted.items() if k not in restart}, ran

    def _count_double_serving(self, stopped: list[StreamKey]) -> None:
        """Add how long the stopped copies may have run beside the new owner's (at most).

        The operator moves a worker's partitions no sooner than a Lease duration
        after it last heard it, which was no earlier than our last heartbeat
        sent before the outage; they have run until now, when they stopped.
        """
        unheard = self.heartbeat.unheard_since()
        if unheard is None:
            return  # we never missed a heartbeat: no failover behind our back
        overlap = max(0.0, self._monotonic() - unheard - self.heartbeat.duration)
        self.double_serving_seconds += overlap * len(stopped)
        log.warning(
            "%s: %d streams ran beside their new owners' for up to %.1f s",
            self.me,
            len(stopped),
            overlap,
        )

    def _read_doc(self) -> RingDoc | None:
        for body in self.ring.items.values():
            try:
                return decode_doc(body.get("data") or {})
            except CodecError as exc:
                log.error("ring ConfigMap unreadable, keeping the last one: %s", exc)
                return self.doc
        return None

    def _bodies(self) -> list[dict[str, Any]]:
        seen: dict[Key, dict[str, Any]] = {}
        for watch in self._watches.values():
            seen.update(watch.items())
        return list(seen.values())

    def _watch(self, mine: frozenset[int], size: int) -> None:
        """Keep one stream watch per (namespace, bucket) on exactly our partitions."""
        selectors = partition_labels.selectors(size, mine) if mine else {}
        wanted: dict[WatchKey, str] = {
            (ns, bucket): selector
            for ns in self._namespaces
            for bucket, selector in selectors.items()
        }
        for key in list(self._watches):
            if key not in wanted:
                self._watches.pop(key).task.cancel()  # no partition of ours left in it
        for key, selector in wanted.items():
            old = self._watches.get(key)
            if old is not None and old.informer.label_selector == selector:
                continue
            ns, bucket = key
            informer: Informer[dict[str, Any]] = Informer(
                self._api,
                kubeapi.stream_path(ns) if ns else kubeapi.stream_path(None),
                name=f"camerastreams in {ns or 'all namespaces'}, bucket {bucket}",
                label_selector=selector,
                on_change=lambda *_: self.kick(),
            )
            previous: dict[Key, dict[str, Any]] = {}
            previous_size, previous_partitions = 0, frozenset[int]()
            if old is not None:
                old.task.cancel()
                previous = old.items()
                previous_size, previous_partitions = old.cover()
            self._watches[key] = _Watch(
                informer=informer,
                task=asyncio.create_task(informer.run(), name=informer.name),
                size=size,
                partitions=frozenset(
                    p for p in mine if p // partition_labels.VALUES_PER_SELECTOR == bucket
                ),
                previous=previous,
                previous_size=previous_size,
                previous_partitions=previous_partitions,
            )

    def _covered(self, mine: frozenset[int], size: int) -> frozenset[int]:
        """Our partitions whose streams are held whole, in every watched namespace.

        A watch being replaced (a partition gained or lost in its bucket, or
        the ring grown) still counts for what the watch it replaces had
        listed: replacing a selector must never stop a stream that stays.
        A partition q of a grown ring holds the keys of partition q mod P of
        the ring it grew from.
        """
        by_namespace: dict[str | None, set[int]] = {ns: set() for ns in self._namespaces}
        for (ns, _bucket), watch in self._watches.items():
            held_size, held = watch.cover()
            if held_size == size:
                by_namespace[ns] |= held & mine
            elif held_size and size % held_size == 0:
                by_namespace[ns] |= {q for q in mine if q % held_size in held}
        covered = set(mine)
        for listed in by_namespace.values():
            covered &= listed
        return frozenset(covered)

    async def _start_sequences(
        self,
        doc: RingDoc | None,
        wanted: Mapping[StreamKey, StreamSpec],
        leads: Mapping[StreamKey, int | None],
    ) -> dict[StreamKey, SequenceStart]:
        if doc is None:
            return {}
        now = self._clock()
        low, high = (
            self._cluster_clock.wall_offset() if self._cluster_clock is not None else (0.0, 0.0)
        )
        incoming = handoff.handoffs_to(doc, self.me)
        new = [k for k in wanted if self._engine.status(k) is None]

        async def one(key: StreamKey) -> tuple[StreamKey, SequenceStart]:
            spec = wanted[key]
            h = incoming.get(plan.partition_of(key, doc.partitions))
            source_next = None
            if h is not None and doc.addresses.get(h.source):
                source_next = await self._source_next(doc.addresses[h.source], key)
            start = plan.start_sequence(
                now,
                spec.hls.segment_seconds,
                source_next=source_next,
                recorded_lead=leads.get(key),
                wall_offset_high=high,
            )
            if h is not None and start.ahead_of is not None:
                # Provisional numbers until the flip (engine.py): remember whom to fence.
                self._fence_from[key] = doc.addresses[h.source]
            self._lead_offsets[key] = low
            return key, start

        results = await asyncio.gather(*(one(k) for k in new))
        return dict(results)

    async def _source_next(self, address: str, key: StreamKey) -> int | None:
        """Ask the previous owner where its playlist is (best effort, short timeout)."""
        if self._session is None:
            return None
        url = f"http://{address}:{self._http_port}{playlist_path(key.namespace, key.name)}"
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                return plan.next_sequence_from_playlist(await response.text())
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def _report(self, doc: RingDoc | None, bodies: list[dict[str, Any]]) -> None:
        if doc is None:
            return
        for body in bodies:
            key = plan.key_of(body)
            if doc.serving[plan.partition_of(key, doc.partitions)] != self.me:
                continue  # taking over, not serving yet: the old owner still reports
            wanted = plan.stream_report(
                body,
                partitions=doc.partitions,
                me=self.me,
                engine_status=self._engine.status(key) if key in self._desired else None,
                wall_offset_low=self._lead_offsets.get(key, 0.0),
            )
            if wanted is None:
                continue
            updated = await status.report(self._api, body, wanted)
            if updated is not None:
                # Keep the cache ahead of the watch so the next pass sees our write.
                for watch in self._watches.values():
                    if (key.namespace, key.name) in watch.informer.items:
                        watch.informer.items[(key.namespace, key.name)] = updated
                fields = wanted.fields
                log.info("[%s] status %s (%s)", key, fields["phase"], fields["reason"] or "-")
