"""Make-before-break handoff of ring partitions between workers: pure logic, no I/O.

Who calls this: the operator's reconciler (operator/camstream_operator/reconcile.py)
runs `advance` once per tick with the live facts it gathered; the worker's cluster
agent (worker/camstream_worker/cluster/) reads the resulting `RingDoc` through
`partitions_for` and `handoffs_to` to know what to run and what to confirm.

Two ownership tables live side by side:

- the *home* table (planned by camstream.ring over the members): who should own
  each partition when everyone is up;
- the *serving* table (kept here): who actually produces each partition's
  streams right now. Workers obey the serving table, players are routed by it.

`advance` moves the serving table towards the *desired* owner of each partition
(the ring's effective owner: the home owner, or its first fallback that is up)
with this state machine per partition (declared here, one Handoff at most):

    serving == desired ────────────────────────────────────────────── (nothing)
    serving is down or gone ──▶ serving := desired at once    (failover / hinted handoff)
    serving up, != desired ──▶ STARTING(source, target, id)   (recorded in the ring)
        STARTING ── target confirms (partition, id) live ──▶ serving := target
                                                              (source then releases: it
                                                               is no longer the owner)
        STARTING ── timeout, attempts left ──▶ STARTING (attempt + 1, same id)
        STARTING ── timeout, no attempts left ──▶ BACKOFF (rolled back; source keeps
                                                           serving, target stops)
        BACKOFF ── retry_at reached ──▶ STARTING (fresh id, attempt 1)
        any ── desired changes / target down ──▶ replaced or dropped

`grow` changes the number of partitions of a settled ring without moving a
stream (see there); the operator runs it when --partitions grows.

A returning worker gets its home partitions back through the same STARTING path
(hand-back without a gap), because the effective owner becomes the home owner
again. The handoff `id` makes stale confirmations (of an earlier attempt round)
worthless.

Timeouts and backoffs: `started` and `retry_at` are the wall clock of the
replica that wrote them, kept in the ring for people. The replica that judges
them next may be another one, whose clock is seconds (or hours) off, so
`advance` takes `ages` when it can: how long this replica has *seen* each
handoff in its current attempt or backoff, by its own monotonic clock (the
operator keeps them, see operator/camstream_operator/planner.py). Without
`ages` it falls back to `now - started`, which is only right on one clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from camstream import ring


class HandoffState(enum.StrEnum):
    STARTING = "starting"  # recorded; the target is starting the partition's streams
    BACKOFF = "backoff"  # rolled back after timeouts; retried at retry_at


class EventKind(enum.StrEnum):
    ASSIGNED = "Assigned"  # a partition without any producer got one
    FAILOVER = "Failover"  # its producer is down or gone: moved without overlap
    STARTED = "HandoffStarted"
    RETRIED = "HandoffRetried"
    HANDED_OFF = "HandedOff"
    ROLLED_BACK = "HandoffRolledBack"
    CANCELLED = "HandoffCancelled"


@dataclass(frozen=True, slots=True)
class Handoff:
    """One in-flight move of a partition from `source` to `target`."""

    partition: int
    source: str
    target: str
    id: int
    started: float  # wall-clock start of the current attempt
    attempt: int = 1
    state: HandoffState = HandoffState.STARTING
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Timing of handoffs; sized so a target has time to connect and write a segment."""

    confirm_timeout: float = 30.0
    max_attempts: int = 3
    backoff: float = 60.0
    # Caps how many partitions one target starts at once, so a new worker is not
    # asked to open every camera of P/N partitions in the same second.
    max_starting_per_target: int = 64


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    partition: int
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Outcome:
    serving: tuple[str, ...]
    handoffs: tuple[Handoff, ...]
    next_id: int
    events: tuple[Event, ...] = ()

    @property
    def changed_partitions(self) -> frozenset[int]:
        return frozenset(e.partition for e in self.events)


@dataclass(frozen=True, slots=True)
class RingDoc:
    """Everything the ring ConfigMap holds, decoded (see camstream/handoff_codec.py)."""

    partitions: int
    version: int  # of the document; bumped on every write
    table: ring.RingTable | None  # the planned (home) owners; None before any worker joined
    serving: tuple[str, ...]  # actual producers ("" = none)
    handoffs: tuple[Handoff, ...] = ()
    addresses: Mapping[str, str] = field(default_factory=dict)  # worker -> pod IP
    next_id: int = 1

    def owner(self, partition: int) -> str:
        return self.serving[partition]


def empty_doc(partitions: int) -> RingDoc:
    return RingDoc(partitions=partitions, version=0, table=None, serving=("",) * partitions)


def advance(
    *,
    serving: Sequence[str],
    handoffs: Iterable[Handoff],
    desired: Sequence[str | None],
    up: frozenset[str],
    confirmed: Mapping[str, frozenset[tuple[int, int]]],
    now: float,
    next_id: int,
    policy: Policy = Policy(),
    ages: Mapping[int, float] | None = None,
) -> Outcome:
    """One deterministic step of every partition's state machine (see module doc).

    desired[p] is the ring's effective owner (None when no worker is up);
    up are the workers able to serve now (Ready and heartbeating, leaving or
    not); confirmed[w] holds the (partition, handoff id) pairs worker w reports
    live. `now` stamps new attempts; `ages[id]`, when given, is how long the
    caller has seen that handoff in its current attempt or backoff (absent: just
    seen), and it alone decides timeouts and retries.
    """

    def age(h: Handoff) -> float:
        return now - h.started if ages is None else ages.get(h.id, 0.0)

    if len(serving) != len(desired):
        raise ValueError("serving and desired tables differ in size")
    by_partition = {h.partition: h for h in handoffs}
    new_serving = list(serving)
    kept: list[Handoff] = []
    events: list[Event] = []
    starting_per_target: dict[str, int] = {}
    for old in by_partition.values():
        if old.state is HandoffState.STARTING:
            starting_per_target[old.target] = starting_per_target.get(old.target, 0) + 1

    for p, want in enumerate(desired):
        source = serving[p]
        h: Handoff | None = by_partition.get(p)
        if source not in up:
            # Nobody produces this partition: make-before-break is moot, move now.
            if want is not None and want != source:
                new_serving[p] = want
                kind = EventKind.FAILOVER if source else EventKind.ASSIGNED
                events.append(Event(kind, p, source, want))
            _release(h, starting_per_target)
            continue
        if want is None or want == source:
            if h is not None and h.state is HandoffState.STARTING:
                events.append(Event(EventKind.CANCELLED, p, h.source, h.target))
            _release(h, starting_per_target)
            continue
        if h is None or h.source != source or h.target != want:
            if h is not None and h.state is HandoffState.STARTING:
                events.append(Event(EventKind.CANCELLED, p, h.source, h.target))
            _release(h, starting_per_target)
            h = None
            if starting_per_target.get(want, 0) >= policy.max_starting_per_target:
                continue  # wait for a slot; the source keeps serving meanwhile
            kept.append(Handoff(p, source, want, next_id, now))
            next_id += 1
            starting_per_target[want] = starting_per_target.get(want, 0) + 1
            events.append(Event(EventKind.STARTED, p, source, want))
            continue
        if h.state is HandoffState.BACKOFF:
            if (now >= h.retry_at) if ages is None else age(h) >= policy.backoff:
                kept.append(Handoff(p, source, want, next_id, now))
                next_id += 1
                starting_per_target[want] = starting_per_target.get(want, 0) + 1
                events.append(Event(EventKind.STARTED, p, source, want))
            else:
                kept.append(h)
            continue
        if (p, h.id) in confirmed.get(want, frozenset()):
            new_serving[p] = want
            starting_per_target[want] -= 1
            events.append(Event(EventKind.HANDED_OFF, p, source, want))
            continue
        if age(h) <= policy.confirm_timeout:
            kept.append(h)
        elif h.attempt < policy.max_attempts:
            kept.append(replace(h, attempt=h.attempt + 1, started=now))
            events.append(Event(EventKind.RETRIED, p, source, want))
        else:
            kept.append(
                replace(h, state=HandoffState.BACKOFF, retry_at=now + policy.backoff, started=now)
            )
            starting_per_target[want] -= 1
            events.append(Event(EventKind.ROLLED_BACK, p, source, want))
    kept.sort(key=lambda h: h.partition)
    return Outcome(tuple(new_serving), tuple(kept), next_id, tuple(events))


def _release(h: Handoff | None, starting_per_target: dict[str, int]) -> None:
    if h is not None and h.state is HandoffState.STARTING:
        starting_per_target[h.target] -= 1


def partitions_for(doc: RingDoc, worker: str) -> frozenset[int]:
    """What `worker` must run: the partitions it serves plus those it is taking over."""
    serving = {p for p, owner in enumerate(doc.serving) if owner == worker}
    return frozenset(serving | set(handoffs_to(doc, worker)))


def handoffs_to(doc: RingDoc, worker: str) -> dict[int, Handoff]:
    """The STARTING handoffs whose target is `worker`, by partition."""
    return {
        h.partition: h
        for h in doc.handoffs
        if h.target == worker and h.state is HandoffState.STARTING
    }


def handoffs_from(doc: RingDoc, worker: str) -> dict[int, Handoff]:
    """The STARTING handoffs whose source is `worker`, by partition."""
    return {
        h.partition: h
        for h in doc.handoffs
        if h.source == worker and h.state is HandoffState.STARTING
    }


def settled(doc: RingDoc, leaving: str) -> bool:
    """True when a leaving worker serves nothing any more (it may exit)."""
    return leaving not in doc.serving


def grow(doc: RingDoc, partitions: int) -> RingDoc:
    """`doc` for a ring of `partitions` (a multiple of its own), every stream kept where it is.

    A key's partition is its hash mod P; with P dividing the new count, new
    partition q holds exactly the keys of old partition q mod P. So copying
    that partition's home and serving owner to q moves nothing: no stream
    restarts. Every member's share is multiplied alike, so at most a few
    partitions move afterwards, by ordinary handoffs, when the planner evens
    out the shares to ⌊P/N⌋ and ⌈P/N⌉. Only a settled ring grows: handoffs
    name old partitions.
    """
    if partitions % doc.partitions or partitions < doc.partitions:
        raise ValueError(f"cannot grow a ring of {doc.partitions} partitions to {partitions}")
    if doc.handoffs:
        raise ValueError("a ring with handoffs in flight cannot change size")
    return replace(
        doc,
        partitions=partitions,
        version=doc.version + 1,
        table=None if doc.table is None else ring.remap(doc.table, partitions),
        serving=tuple(doc.serving[q % doc.partitions] for q in range(partitions)),
    )
