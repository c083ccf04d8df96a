"""The worker's cluster agent: ring in, pipelines and confirmations out.

Who calls this: cli.py (`camstream worker`) builds one `Agent` around the
engine and runs it for the life of the pod.

One reconcile pass (triggered by any change: ring ConfigMap, a watched
CameraStream, a stream's phase in the engine) does, in order:

1. decode the ring document; the partitions to run are those served here plus
   those being handed over to here (camstream.handoff.partitions_for);
2. keep the CameraStream watch's label selector equal to those partitions;
3. hand the engine the desired streams (engine.apply), with the media
   sequence each new stream starts at (continuing above the previous owner);
4. announce on the heartbeat Lease which incoming handoffs are live here;
5. write the status of the streams this worker serves, where it changed.

Graceful leave (`leave`, on SIGTERM): announce leaving, keep serving while the
operator moves every partition away (make before break), and return once
nothing is served here any more or the deadline is near.
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

from camstream import handoff, kubeapi
from camstream.handoff import RingDoc
from camstream.handoff_codec import CodecError, decode_doc
from camstream.spec import StreamKey, StreamSpec
from camstream.wire import PARTITION_LABEL, playlist_path
from camstream_worker.outputs.hls.sequence import SequenceStart
from camstream_worker.state import StreamStatus

from . import desired as plan
from . import status
from .heartbeat import Heartbeat
from .informer import Informer

log = logging.getLogger("camstream.worker.cluster")

# Past this many partitions, one "exists" selector and local filtering beat a
# huge `in (...)` list in every watch URL.
MAX_SELECTOR_VALUES = 256


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
        heartbeat_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._engine = engine
        self.me = identity.pod_name
        self._http_port = http_port
        self._clock = clock
        self._kick = asyncio.Event()
        self.doc: RingDoc | None = None
        self.leaving = False
        self._desired: dict[StreamKey, StreamSpec] = {}
        # Selector -> (partitions it names, ring size they were numbered for).
        self._selector_parts: dict[str, tuple[frozenset[int], int]] = {}
        self._stream_tasks: dict[str | None, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.heartbeat = Heartbeat(
            api,
            namespace=ring_namespace,
            worker=self.me,
            ring_name=ring_name,
            period=heartbeat_seconds,
        )
        self.ring = Informer(
            api,
            kubeapi.configmap_path(ring_namespace),
            field_selector=f"metadata.name={ring_name}",
            on_change=self.kick,
            name=f"ring {ring_namespace}/{ring_name}",
        )
        # One watch per namespace this release serves, or one for the cluster.
        self.streams: dict[str | None, Informer] = {
            ns: Informer(
                api,
                kubeapi.stream_path(ns) if ns else kubeapi.stream_path(None),
                on_change=self.kick,
                name=f"camerastreams in {ns or 'all namespaces'}",
                still_ours=self._still_ours,
            )
            for ns in (watch_namespaces or (None,))
        }
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
            for task in [*tasks, *self._stream_tasks.values()]:
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
        self.doc = doc
        mine = handoff.partitions_for(doc, self.me) if doc is not None else frozenset()
        size = doc.partitions if doc is not None else 0
        self._watch(mine, size)
        covered = self._covered(mine, size)
        bodies = [
            b
            for informer in self.streams.values()
            for b in informer.items.values()
            if doc is not None and plan.partition_of(plan.key_of(b), doc.partitions) in covered
        ]
        wanted = plan.streams_to_run(doc, self.me, bodies)
        leads = {plan.key_of(b): plan.recorded_lead(b) for b in bodies}
        starts = await self._start_sequences(doc, wanted, leads)
        await self._engine.apply(wanted, start_sequences=starts)
        self._desired = wanted
        reported = {plan.key_of(b): (b.get("status") or {}).get("phase") for b in bodies}
        confirmed = plan.confirmations(
            doc,
            self.me,
            wanted,
            engine_status=self._engine.status,
            reported_phase=reported.get,
            covered=covered,
        )
        self.heartbeat.announce(confirmed=confirmed)
        await self._report(doc, bodies)

    def _read_doc(self) -> RingDoc | None:
        for body in self.ring.items.values():
            try:
                return decode_doc(body.get("data") or {})
            except CodecError as exc:
                log.error("ring ConfigMap unreadable, keeping the last one: %s", exc)
                return self.doc
        return None

    def _watch(self, mine: frozenset[int], partitions: int) -> None:
        """Keep the CameraStream watch on exactly our partitions."""
        if not mine:
            selector = None
        elif len(mine) > MAX_SELECTOR_VALUES:
            selector = PARTITION_LABEL
        else:
            selector = f"{PARTITION_LABEL} in ({','.join(map(str, sorted(mine)))})"
        if selector is not None:
            self._selector_parts[selector] = (mine, partitions)
        for ns, informer in self.streams.items():
            running = ns in self._stream_tasks
            if selector == informer.label_selector and (selector is None or running):
                continue
            if running:
                self._stream_tasks.pop(ns).cancel()
            informer.label_selector = selector
            if selector is None:
                informer.items = {}
                informer.listed_selector = None
                continue
            self._stream_tasks[ns] = asyncio.create_task(informer.run(), name=informer.name)

    async def _still_ours(self, gone: dict[str, Any]) -> dict[str, Any] | None:
        """A stream the watch reports gone: is it only relabelled for a grown ring?

        The event carries the stream as it was, so ask for it as it is (a GET
        per stream leaving our selector: rare, they are deleted or relabelled).
        """
        if self.doc is None:
            return None
        key = plan.key_of(gone)
        try:
            current = await self._api.get(kubeapi.stream_path(key.namespace, key.name))
        except kubeapi.NotFound:
            return None
        return current if plan.relabelled_for_larger_ring(current, self.doc, self.me) else None

    def _covered(self, mine: frozenset[int], partitions: int) -> frozenset[int]:
        covered = mine
        for informer in self.streams.values():
            listed = informer.listed_selector
            if listed is None:
                return frozenset()
            if listed != PARTITION_LABEL:
                parts, listed_size = self._selector_parts.get(listed, (frozenset(), partitions))
                covered &= plan.listed_cover(parts, listed_size, partitions)
        return covered

    async def _start_sequences(
        self,
        doc: RingDoc | None,
        wanted: Mapping[StreamKey, StreamSpec],
        leads: Mapping[StreamKey, int | None],
    ) -> dict[StreamKey, SequenceStart]:
        if doc is None:
            return {}
        now = self._clock()
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
            )
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
            if key not in self._desired:
                continue
            if doc.serving[plan.partition_of(key, doc.partitions)] != self.me:
                continue  # taking over, not serving yet: the old owner still reports
            current = self._engine.status(key)
            if current is None:
                continue
            fields, conds = plan.worker_status(current, self.me)
            updated = await status.report(self._api, body, fields, conds)
            if updated is not None:
                # Keep the cache ahead of the watch so the next pass sees our write.
                informer = self.streams.get(key.namespace) or self.streams.get(None)
                if informer is not None:
                    informer.items[(key.namespace, key.name)] = updated
                log.info("[%s] status %s (%s)", key, fields["phase"], fields["reason"] or "-")
