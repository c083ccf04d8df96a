"""The ring's data: the partition function, the ownership table and transfers.

Who calls it: nobody directly; everything goes through the facade
``camstream.ring``. The operator keeps a ``RingTable`` in a ConfigMap (see
``ring_codec``) and derives transfers from two tables; workers read the table to
learn which partitions they own; the operator labels every CameraStream with
``partition_of("namespace/name", P)`` so a worker can watch only its own.

Pure: no I/O, no clock, no randomness. The hash is BLAKE2b, never Python's
``hash()`` (randomized per process, so two operator replicas would disagree).

Why the low bits: ``partition_of`` takes the 64-bit hash modulo P, and P is a
power of two, so the partition is the hash's low ``log2(P)`` bits. Doubling P
adds one bit: a key in partition ``p`` of P lands in ``p`` or ``p + P`` of 2P.
That is what lets ``ring_plan.resize`` keep every key on its owner.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass


def is_power_of_two(value: int) -> bool:
    """True for 1, 2, 4, 8, ... (and False for bools, which are ints in Python)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value > 0
        and value & (value - 1) == 0
    )


def check_partitions(partitions: int) -> int:
    """Return ``partitions`` if it is a power of two, else raise ValueError."""
    if not is_power_of_two(partitions):
        raise ValueError(f"partitions must be a power of two (1, 2, 4, ...), got {partitions!r}")
    return partitions


def stream_key(namespace: str, name: str) -> str:
    """The ring key of a CameraStream: ``"namespace/name"``."""
    return f"{namespace}/{name}"


def key_hash(key: str) -> int:
    """A stable 64-bit hash: the first 8 bytes of BLAKE2b(key), big-endian."""
    if not isinstance(key, str):
        raise TypeError(f"ring keys are str, got {type(key).__name__}")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` (``"namespace/name"``) in a ring of ``partitions``.

    Equal to ``key_hash(key) mod partitions``; ``partitions`` must be a power of
    two (ValueError otherwise).
    """
    check_partitions(partitions)
    return key_hash(key) & (partitions - 1)


@dataclass(frozen=True)
class RingTable:
    """Who owns which partition, at one version of the ring.

    ``owners[p]`` is the member (a worker pod name) owning partition ``p``. Every
    partition always has an owner: a table with a hole cannot be built.
    ``version`` grows by one each time ``plan`` changes the owners.
    """

    partitions: int
    version: int
    owners: tuple[str, ...]

    def __post_init__(self) -> None:
        check_partitions(self.partitions)
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise ValueError(f"ring version must be an int, got {self.version!r}")
        if self.version < 0:
            raise ValueError(f"ring version must be >= 0, got {self.version}")
        # Accept any sequence but store a tuple, so the table stays hashable
        # and immutable.
        object.__setattr__(self, "owners", tuple(self.owners))
        if len(self.owners) != self.partitions:
            raise ValueError(
                f"ring table has {len(self.owners)} owners for {self.partitions} partitions"
            )
        for member in set(self.owners):
            check_member(member)

    def owner(self, partition: int) -> str:
        """The owner of ``partition`` (IndexError outside 0..P-1)."""
        if not 0 <= partition < self.partitions:
            raise IndexError(f"partition {partition} outside 0..{self.partitions - 1}")
        return self.owners[partition]

    def owner_of(self, key: str) -> str:
        """The owner of the stream with ring key ``key``."""
        return self.owners[partition_of(key, self.partitions)]

    def members(self) -> tuple[str, ...]:
        """The distinct owners, sorted by name."""
        return tuple(sorted(set(self.owners)))

    def counts(self) -> dict[str, int]:
        """Partitions per owner (members owning none are absent)."""
        return dict(Counter(self.owners))

    def partitions_of(self, member: str) -> tuple[int, ...]:
        """The partitions ``member`` owns, ascending."""
        return tuple(p for p, owner in enumerate(self.owners) if owner == member)


def check_member(member: object) -> str:
    """Return ``member`` if it can own partitions: a non-empty str without control chars."""
    if not isinstance(member, str) or not member:
        raise ValueError(f"ring members are non-empty strings, got {member!r}")
    if not member.isprintable():
        raise ValueError(f"ring member names must be printable, got {member!r}")
    return member


@dataclass(frozen=True)
class Transfer:
    """Partition ``partition`` (numbered in the new table) moves ``source`` → ``target``."""

    partition: int
    source: str
    target: str


def sources_of(old: RingTable, partition: int, partitions: int) -> tuple[int, ...]:
    """The partitions of ``old`` whose keys fall in ``partition`` of a ring of ``partitions``.

    Same size: itself. Grown: its parent ``partition mod old.partitions``.
    Shrunk: its children ``partition + k * partitions``.
    """
    if partitions <= old.partitions:
        return tuple(range(partition, old.partitions, partitions))
    return (partition % old.partitions,)


def transfers(old: RingTable, new: RingTable) -> tuple[Transfer, ...]:
    """Every (partition, source, target) whose keys change owner from ``old`` to ``new``.

    Works across a resize: partitions are numbered in ``new``; after a shrink a
    merged partition may list one transfer per distinct old owner of its keys.
    Ordered by partition, then source.
    """
    moves: list[Transfer] = []
    for partition, target in enumerate(new.owners):
        sources = {old.owners[p] for p in sources_of(old, partition, new.partitions)}
        moves.extend(
            Transfer(partition, source, target) for source in sorted(sources) if source != target
        )
    return tuple(moves)
