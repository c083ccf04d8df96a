"""Preference lists: who serves a partition when its owner is down (hinted handoff).

Who calls it: the operator (through ``camstream.ring``), when a worker crashes
or comes back, to decide who runs each partition meanwhile; the worker's
playback router, to find who serves a stream right now. Pure, riak_core style:
the functions take the table and the set of *up* members, and a thin wrapper
elsewhere fetches the live set (Ready pods, fresh heartbeat Leases).

The preference list of partition ``p`` walks the ring forward from ``p``:
``owner(p), owner(p+1), ...`` wrapping around, keeping each up member the
first time it appears. So it starts with the owner when the owner is up, then
lists the *fallbacks*: the owners of the following partitions. Because
``ring_plan`` scatters each member's partitions around the ring, a crashed
member's partitions fall back to many different members rather than all to
one neighbour. When the owner is up again it is first again: the hint is
handed back with no change to the table.

Members that are up but own no partition (a worker that joined after the last
plan) never appear: they take work only through ``plan``.
"""

from __future__ import annotations

from collections.abc import Collection

from camstream.ring_table import RingTable


def _as_set(up: Collection[str]) -> frozenset[str] | set[str]:
    # A list would make every membership test linear in the number of workers.
    return up if isinstance(up, set | frozenset) else frozenset(up)


def preference_list(table: RingTable, partition: int, up: Collection[str], n: int) -> list[str]:
    """Up to ``n`` distinct up members for ``partition``: the owner (if up), then fallbacks.

    Shorter than ``n`` when fewer up members own partitions; empty when none
    does. Never contains a member that is not in ``up``.
    """
    if not 0 <= partition < table.partitions:
        raise IndexError(f"partition {partition} outside 0..{table.partitions - 1}")
    if n < 0:
        raise ValueError(f"preference list length must be >= 0, got {n}")
    alive = _as_set(up)
    chosen: list[str] = []
    seen: set[str] = set()
    owners = table.owners
    size = table.partitions
    for step in range(size):
        if len(chosen) >= n:
            break
        member = owners[(partition + step) % size]
        if member in alive and member not in seen:
            seen.add(member)
            chosen.append(member)
    return chosen


def effective_owners(table: RingTable, up: Collection[str]) -> tuple[str, ...]:
    """Per partition, the member that serves it now: the first of its preference list.

    The owner where the owner is up, else the next up owner walking the ring
    forward. Raises ValueError when no owner of the table is up (nobody could
    serve anything: the caller must re-plan or wait). Linear in P.
    """
    alive = _as_set(up)
    owners = table.owners
    size = table.partitions
    if not any(member in alive for member in set(owners)):
        raise ValueError("no member of the ring is up: no partition can be served")
    served: list[str] = [""] * size
    # Walk backwards over two laps: the first lap (indices P..2P-1) only
    # learns the next up owner after the wrap-around point.
    following = ""
    for index in range(2 * size - 1, -1, -1):
        member = owners[index % size]
        if member in alive:
            following = member
        if index < size:
            served[index] = following
    return tuple(served)
