"""Who the workers are, from their pods and heartbeat Leases: pure, no I/O.

Who calls this: the reconciler (reconcile.py) feeds it the worker pods and
Leases it listed, and hands the result to the planner.

- A worker *exists* while its pod exists.
- It is *leaving* once its pod is terminating (deletionTimestamp: scale-down,
  rolling update, eviction) or its Lease says so (SIGTERM arrived).
- It is *up* (can serve now) while its heartbeat Lease is fresh and its pod is
  Ready; a leaving worker stays up while it heartbeats even if no longer
  Ready, so its partitions leave it make-before-break rather than by failover.
- The *table members* (who gets home partitions) are the up, non-leaving
  workers plus the table's current owners that still exist and are not
  leaving: a crashed worker keeps its home partitions (served by fallbacks
  meanwhile) and gets them back when it returns; a worker that is gone is
  dropped (orphan cleanup); a pod that never came up is not planned for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from camstream import ring
from camstream.wire import CONFIRMED_ANNOTATION, LEAVING_ANNOTATION, decode_confirmed


@dataclass(frozen=True, slots=True)
class Membership:
    existing: frozenset[str]
    up: frozenset[str]
    leaving: frozenset[str]
    addresses: Mapping[str, str] = field(default_factory=dict)
    confirmed: Mapping[str, frozenset[tuple[int, int]]] = field(default_factory=dict)

    def table_members(self, current: ring.RingTable | None) -> frozenset[str]:
        owners = frozenset(current.owners) if current is not None else frozenset()
        return (self.up | (owners & self.existing)) - self.leaving


def from_resources(
    pods: Iterable[Mapping[str, Any]],
    leases: Iterable[Mapping[str, Any]],
    *,
    now: float,
    default_lease_seconds: float = 6.0,
) -> Membership:
    by_holder: dict[str, Mapping[str, Any]] = {}
    for item in leases:
        holder = (item.get("spec") or {}).get("holderIdentity")
        if holder:
            by_holder[str(holder)] = item
    existing: set[str] = set()
    up: set[str] = set()
    leaving: set[str] = set()
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
        fresh = lease is not None and _fresh(lease, now, default_lease_seconds)
        if fresh and (is_leaving or _ready(status)):
            up.add(name)
            if status.get("podIP"):
                addresses[name] = str(status["podIP"])
            confirmed[name] = decode_confirmed(annotations.get(CONFIRMED_ANNOTATION))
    return Membership(
        existing=frozenset(existing),
        up=frozenset(up),
        leaving=frozenset(leaving),
        addresses=addresses,
        confirmed=confirmed,
    )


def _ready(status: Mapping[str, Any]) -> bool:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _fresh(lease: Mapping[str, Any], now: float, default_seconds: float) -> bool:
    spec = lease.get("spec") or {}
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is None:
        return False
    duration = float(spec.get("leaseDurationSeconds") or default_seconds)
    return now - renewed <= duration


def parse_time(text: Any) -> float | None:
    """RFC 3339 (MicroTime or Time) to epoch seconds; None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
