"""Who the workers are, from their pods and heartbeat Leases: pure, no I/O.

Who calls this: the reconciler (reconcile.py) feeds it the worker pods and
Leases its informers hold, what it has *seen* of the Leases (`LeaseSightings`)
and its own monotonic clock, and hands the result to the planner.

- A worker *exists* while its pod exists.
- It is *leaving* once its pod is terminating (deletionTimestamp: scale-down,
  rolling update, eviction) or its Lease says so (SIGTERM arrived).
- It is *up* (can serve now) while its pod is Ready (by its kubelet: see
  `_ready`) and its heartbeat Lease has been seen renewed within the Lease's
  duration; a leaving worker stays
  up while it heartbeats even if no longer Ready, so its partitions leave it
  make-before-break rather than by failover.
- It is *silent* when its pod is Ready but its Lease has not been seen
  renewed for the duration: the worker may be dead, or cut off, or this
  operator may be the one cut off. The planner fails silent workers over only
  while most of the others are heard (see planner.py).
- It is *late* when it is up but its Lease has not been seen renewed for half
  the duration (it missed a renewal). Late workers are not treated any
  differently; the planner counts them to tell one worker going silent from
  everybody going silent a few seconds apart (a common cause).
- It is *returning* while the StatefulSet will bring it back (its ordinal is
  below spec.replicas: a rolling update or a crash, not a scale-down) and it
  has not been away longer than the rejoin grace. A returning worker keeps
  its home partitions (served by fallbacks meanwhile), as riak_core's
  claimant keeps a node that is only restarting, so a rolling update moves
  each partition out to a fallback and back, never to a new home.

Why "seen" and not the Lease's renewTime: renewTime is written with the
worker node's clock and this process reads it with its own; nodes' clocks
differ by seconds after a VM pause or a bad NTP source. Kubernetes' leader
election does the same: it remembers when it observed a record change and
lets the lease expire by its own clock from then. renewTime stays in the
Lease for people and kubectl.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from camstream import ring
from camstream.wire import CONFIRMED_ANNOTATION, LEAVING_ANNOTATION, decode_confirmed

DEFAULT_LEASE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Membership:
    existing: frozenset[str]
    up: frozenset[str]
    leaving: frozenset[str]
    addresses: Mapping[str, str] = field(default_factory=dict)
    confirmed: Mapping[str, frozenset[tuple[int, int]]] = field(default_factory=dict)
    silent: frozenset[str] = frozenset()
    returning: frozenset[str] = frozenset()
    late: frozenset[str] = frozenset()
    # Seconds since each Ready (or leaving) worker's Lease was last seen to change.
    quiet_for: Mapping[str, float] = field(default_factory=dict)

    def table_members(self, current: ring.RingTable | None) -> frozenset[str]:
        """Who gets home partitions: the up workers that stay, plus owners coming back."""
        owners = frozenset(current.owners) if current is not None else frozenset()
        return (self.up - self.leaving) | (owners & (self.returning | self.silent))


class LeaseSightings:
    """When each heartbeat Lease was last seen to change, by this process's monotonic clock.

    A Lease counts as renewed when its resourceVersion changes (any write by
    the worker is a sign of life). Time this process could not see counts for
    nobody: after its watch broke, or after every Lease went quiet at once (an
    etcd outage looks like that from here), each worker's sighting restarts
    from the moment sightings resumed, so nobody is declared down because of
    the operator's own blindness. A worker seen for the first time (operator
    start, new leader) likewise gets a full lease duration of grace.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, float]] = {}  # holder -> (version, seen at)
        self._last_change: float | None = None
        self._resumed_at = 0.0
        self.quiet_after = DEFAULT_LEASE_SECONDS  # a silence this long is our blindness

    def observe(self, holder: str, version: str, now: float) -> None:
        known = self._seen.get(holder)
        if known is not None and known[0] == version:
            return
        if self._last_change is None or now - self._last_change > self.quiet_after:
            self._resumed_at = now  # first sighting after a silence of everyone
        self._last_change = now
        self._seen[holder] = (version, now)

    def blind_until(self, now: float) -> None:
        """The caller could not watch until `now` (a re-list just ended): restart every clock."""
        self._resumed_at = max(self._resumed_at, now)

    def forget(self, holder: str) -> None:
        self._seen.pop(holder, None)

    def seen_at(self, holder: str) -> float | None:
        """The later of the holder's last sighting and the last resumption; None if never seen."""
        known = self._seen.get(holder)
        return None if known is None else max(known[1], self._resumed_at)

    def holders(self) -> frozenset[str]:
        return frozenset(self._seen)


def from_resources(
    pods: Iterable[Mapping[str, Any]],
    leases: Iterable[Mapping[str, Any]],
    *,
    sightings: LeaseSightings,
    now: float,
    replicas: int | None = None,
    present_since: Mapping[str, float] | None = None,
    rejoin_grace: float = 300.0,
    known: Iterable[str] = (),
) -> Membership:
    """Membership at monotonic time `now`.

    `replicas` is the StatefulSet's spec.replicas (None: unknown, every ordinal
    is expected back); `present_since` maps a worker to the monotonic time it
    was last up and staying (the reconciler keeps it); `known` are other names
    to judge as possibly returning (the ring table's owners).
    """
    by_holder: dict[str, Mapping[str, Any]] = {}
    for item in leases:
        holder = (item.get("spec") or {}).get("holderIdentity")
        if holder:
            by_holder[str(holder)] = item
    existing: set[str] = set()
    up: set[str] = set()
    leaving: set[str] = set()
    silent: set[str] = set()
    late: set[str] = set()
    quiet_for: dict[str, float] = {}
    addresses: dict[str, str] = {}
    confirmed: dict[str, frozenset[tuple[int, int]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name", ""))
        if not name:
            continue
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue  # a finished pod is gone for our purposes
        existing.add(name)
        lease: Mapping[str, Any] | None = by_holder.get(name)
        annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
        is_leaving = bool(meta.get("deletionTimestamp")) or (
            annotations.get(LEAVING_ANNOTATION) == "true"
        )
        if is_leaving:
            leaving.add(name)
        if not (is_leaving or _ready(status)):
            continue  # its kubelet says it cannot serve: no need to wait for the Lease
        quiet, duration = _quiet(lease, name, sightings, now)
        if quiet is not None:
            quiet_for[name] = quiet
        if quiet is not None and quiet <= duration:
            up.add(name)
            if quiet > duration / 2:
                late.add(name)
            confirmed[name] = decode_confirmed(annotations.get(CONFIRMED_ANNOTATION))
        elif not is_leaving:
            silent.add(name)
        else:
            continue
        if status.get("podIP"):
            addresses[name] = str(status["podIP"])
    staying = up - leaving
    returning: set[str] = set()
    since = present_since or {}
    for name in (existing | set(known)) - staying - silent:
        if not _comes_back(name, replicas):
            continue  # scaled down (or not ours): its share is planned away at once
        last = since.get(name)  # None: not seen since this process started, so in grace
        if last is None or now - last <= rejoin_grace:
            returning.add(name)
    return Membership(
        existing=frozenset(existing),
        up=frozenset(up),
        leaving=frozenset(leaving),
        addresses=addresses,
        confirmed=confirmed,
        silent=frozenset(silent),
        returning=frozenset(returning),
        late=frozenset(late),
        quiet_for=quiet_for,
    )


def ordinal(name: str) -> int | None:
    """The StatefulSet ordinal at the end of a pod name ("camstream-worker-3" → 3)."""
    _, _, tail = name.rpartition("-")
    return int(tail) if tail.isdigit() else None


def _comes_back(name: str, replicas: int | None) -> bool:
    number = ordinal(name)
    return replicas is None or (number is not None and number < replicas)


def _ready(status: Mapping[str, Any]) -> bool:
    """The kubelet's verdict: Ready, or ContainersReady when only Ready was flipped.

    The node lifecycle controller marks every pod of a node it has not heard
    from Ready=False and leaves ContainersReady, which only the kubelet
    writes, alone. After an API server or etcd outage longer than its grace
    that is every pod of every node at once, for the seconds until each
    kubelet posts again; reading it as a crash would move every partition.
    Whether such a worker is alive is for its heartbeat Lease to say.
    """
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
    return conditions.get("Ready") == "True" or conditions.get("ContainersReady") == "True"


def _quiet(
    lease: Mapping[str, Any] | None, holder: str, sightings: LeaseSightings, now: float
) -> tuple[float | None, float]:
    """(seconds since the holder's Lease was seen to change or None, the Lease's duration)."""
    duration = float(((lease or {}).get("spec") or {}).get("leaseDurationSeconds") or 0)
    seen = sightings.seen_at(holder) if lease is not None else None
    return (None if seen is None else max(0.0, now - seen)), duration or DEFAULT_LEASE_SECONDS


def parse_time(text: Any) -> float | None:
    """RFC 3339 (MicroTime or Time) to epoch seconds; None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
