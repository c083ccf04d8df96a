"""The claim algorithm: who should own each partition for a set of members.

Who calls it: the operator (through ``camstream.ring``) whenever the set of
Ready workers changes or an operator wants the ring resized; the benchmark in
``bench/ring_bench.py``. Pure and deterministic, so two operator replicas (or
one operator before and after a restart) compute the same table.

The algorithm (``plan``), for P partitions and the N members, sorted by name:

1. Start from the current owners (after ``remap`` when P changes). Partitions
   owned by someone who is no longer a member are *orphans*.
2. Targets: ``r = P mod N`` members get ``⌈P/N⌉`` partitions, the others
   ``⌊P/N⌋``. The ``⌈P/N⌉`` slots go to the members that hold the most today
   (ties by name): this choice minimises the number of moves, because a slot
   of ``⌈P/N⌉`` given to a member that already holds that many costs nothing.
3. A member above its target releases its surplus, taking the partitions
   that come last in a fixed pseudo-random *rank* order of the partitions
   (BLAKE2b of the partition number). Nobody else gives anything up.
4. Released partitions and orphans, in rank order, are dealt round-robin to
   the members below their target (by name) until each reaches its target.

Guarantees (checked by ``tests/unit/test_ring.py``):

- Total: every partition has an owner, and every owner is a member.
- Balanced: every member owns ``⌊P/N⌋`` or ``⌈P/N⌉`` partitions.
- Deterministic: the result depends on the set of members only, not on their
  order or duplicates, and never on process state.
- Minimal: the number of partitions that change owner is the least any
  balanced table can reach from the current one. A member only receives
  what it lacks and only gives up what it has in excess. So a join N→N+1
  moves ``⌊P/(N+1)⌋`` or ``⌈P/(N+1)⌉`` partitions (all to the newcomer), and
  a leave moves exactly the leaver's partitions.
- Stable: a plan with nothing to change returns the same table (same version);
  any change bumps the version by one.
- Well mixed: the rank order is unrelated to partition numbers, so a member's
  partitions are spread around the ring and the ring-walk fallbacks of
  ``ring_prefs`` share a crashed member's load among many others, not one
  neighbour.

Empty membership is refused (ValueError): a ring with no owner would leave
every stream without a producer, and the caller should notice that rather
than write such a table. With more members than partitions some members own
nothing (``⌊P/N⌋ = 0``), which is still balanced.

Resize (``resize``) is a planned migration: ``remap`` first relabels the
table for the new P keeping every key on its owner (growing splits partition
``p`` into ``p, p + P, p + 2P, ...`` which keep ``p``'s owner, because the
partition is the hash's low bits; shrinking merges those children into
``p``, which keeps the owner of ``p``), then ``plan`` rebalances with the
fewest moves. The transfers to carry out are ``transfers(old, new)``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from camstream.ring_table import RingTable, check_member, check_partitions


@functools.lru_cache(maxsize=16)
def _rank_order(partitions: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(partitions in rank order, rank of each partition) for a ring of ``partitions``.

    A fixed pseudo-random permutation: it decides which partitions a member
    gives up first and in which order released partitions are dealt, so that
    ownership ends up scattered around the ring rather than in runs.
    """

    def rank_key(partition: int) -> bytes:
        data = b"camstream-ring-rank:" + partition.to_bytes(8, "big")
        return hashlib.blake2b(data, digest_size=8).digest()

    order = tuple(sorted(range(partitions), key=rank_key))
    rank = [0] * partitions
    for position, partition in enumerate(order):
        rank[partition] = position
    return order, tuple(rank)


def normalize_members(members: Sequence[str]) -> tuple[str, ...]:
    """The members as a sorted tuple without duplicates; ValueError if empty or bad."""
    if isinstance(members, str):
        # A bare string is a sequence of characters: almost surely a mistake.
        raise TypeError("members must be a sequence of member names, not one str")
    names = tuple(sorted({check_member(member) for member in members}))
    if not names:
        raise ValueError("cannot plan a ring with no members: every partition needs an owner")
    return names


def remap(table: RingTable, partitions: int) -> RingTable:
    """``table`` relabelled for a ring of ``partitions``, every key keeping its owner.

    Growing: new partition ``q`` takes the owner of ``q mod P``, its parent.
    Shrinking: new partition ``q`` takes the owner of old ``q`` (its children
    ``q + k * partitions`` join it). Not balanced in general; the version is
    unchanged, since no decision was made yet. ``plan`` finishes the job.
    """
    check_partitions(partitions)
    old = table.partitions
    owners = tuple(table.owners[q % old] for q in range(partitions))
    return RingTable(partitions=partitions, version=table.version, owners=owners)


def _targets(held: dict[str, list[int]], names: tuple[str, ...], partitions: int) -> dict[str, int]:
    """How many partitions each member should own: ⌊P/N⌋, or ⌈P/N⌉ for the fullest r."""
    floor, extra = divmod(partitions, len(names))
    fullest_first = sorted(names, key=lambda name: (-len(held[name]), name))
    return {name: floor + (1 if i < extra else 0) for i, name in enumerate(fullest_first)}


def _deal(deficits: dict[str, int], names: tuple[str, ...]) -> list[str]:
    """Round-robin receiving slots: one per member per round while it still lacks some."""
    slots: list[str] = []
    pending = [(name, deficits[name]) for name in names if deficits[name] > 0]
    while pending:
        slots.extend(name for name, _ in pending)
        pending = [(name, lack - 1) for name, lack in pending if lack > 1]
    return slots


def plan(current: RingTable | None, members: Sequence[str], partitions: int) -> RingTable:
    """The balanced table for ``members`` reached from ``current`` with the fewest moves.

    ``current`` None means a fresh ring (version 1). If ``current`` has a
    different number of partitions it is ``remap``-ped first (a resize). Returns
    ``current`` itself when nothing needs to change. Raises ValueError for an
    empty member list or a ``partitions`` that is not a power of two.
    """
    check_partitions(partitions)
    names = normalize_members(members)
    order, rank = _rank_order(partitions)

    base: RingTable | None = current
    if current is not None and current.partitions != partitions:
        base = remap(current, partitions)
    owners: list[str | None] = list(base.owners) if base is not None else [None] * partitions

    # Partitions per member in rank order, so a surplus is cut from the end.
    held: dict[str, list[int]] = {name: [] for name in names}
    released: list[int] = []
    for partition in order:
        owner = owners[partition]
        kept = held.get(owner) if owner is not None else None
        if kept is None:
            released.append(partition)  # an orphan: its owner left
        else:
            kept.append(partition)

    targets = _targets(held, names, partitions)
    deficits: dict[str, int] = {}
    for name in names:
        surplus = len(held[name]) - targets[name]
        if surplus > 0:
            released.extend(held[name][-surplus:])
        deficits[name] = max(0, -surplus)

    released.sort(key=rank.__getitem__)
    slots = _deal(deficits, names)
    # Deficits and released partitions both sum to P minus what is kept, so
    # they pair up exactly (strict zip would raise on a bug here).
    for partition, name in zip(released, slots, strict=True):
        owners[partition] = name

    final = tuple(owner for owner in owners if owner is not None)
    if current is not None and current.partitions == partitions and final == current.owners:
        return current
    version = current.version + 1 if current is not None else 1
    return RingTable(partitions=partitions, version=version, owners=final)


def resize(
    table: RingTable, new_partitions: int, members: Sequence[str] | None = None
) -> RingTable:
    """``table`` migrated to ``new_partitions`` (a power of two), keeping owners where it can.

    ``members`` defaults to the table's current owners. The result is
    balanced. After a growth every key stays on its owner unless balance
    needs it elsewhere: the moves are the fewest any balanced table allows
    from ``remap(table, new_partitions)``. The keys to hand off are
    ``transfers(table, result)``.
    """
    check_partitions(new_partitions)
    chosen = table.members() if members is None else members
    return plan(table, chosen, new_partitions)
