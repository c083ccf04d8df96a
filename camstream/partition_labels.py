"""The partition labels on each CameraStream: one per ring size. Pure, no I/O.

Who calls this: the operator's admission webhook (labels a CameraStream in
its create request, so labelling costs no write of its own) and its fallback
labeller (patches what arrived without them); every worker, to watch only the
streams of its partitions with a label selector; the fleet benchmark.

Why one label per power-of-two ring size: a stream's partition in a ring of P
is the low log2(P) bits of its hash (camstream.ring.partition_of), so the
label for every size the ring may still grow to is known at creation. A
stream carries ``camstream.io/partition-<P>`` for the ring's size at
labelling time and every larger size up to MAX_PARTITIONS; growing the ring
from P to 2P then only switches which label the workers select on, and costs
no write per stream. (A single label would be rewritten on all 100k streams
at every growth: about four minutes of the API server's whole write budget.)

A ring never shrinks, so sizes below the one a stream was labelled for are
never needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from camstream import ring, wire

MAX_PARTITIONS = 1 << 16  # the largest ring a label is written for
# An `in (...)` list of this many values keeps a watch URL near 6 KB; more
# partitions than that are watched through several selectors (see selectors).
VALUES_PER_SELECTOR = 1024


def label_key(partitions: int) -> str:
    """The label that holds a stream's partition in a ring of `partitions`."""
    ring.check_partitions(partitions)
    return f"{wire.PARTITION_LABEL_PREFIX}{partitions}"


def sizes_from(partitions: int) -> tuple[int, ...]:
    """The ring sizes a stream labelled for a ring of `partitions` carries labels for."""
    ring.check_partitions(partitions)
    if partitions > MAX_PARTITIONS:
        raise ValueError(f"rings are limited to {MAX_PARTITIONS} partitions, got {partitions}")
    sizes = []
    size = partitions
    while size <= MAX_PARTITIONS:
        sizes.append(size)
        size *= 2
    return tuple(sizes)


def labels_for(namespace: str, name: str, partitions: int) -> dict[str, str]:
    """Every partition label of the stream `namespace/name` for a ring of `partitions`."""
    hashed = ring.key_hash(ring.stream_key(namespace, name))
    return {label_key(size): str(hashed & (size - 1)) for size in sizes_from(partitions)}


def missing(
    labels: Mapping[str, str] | None, namespace: str, name: str, partitions: int
) -> dict[str, str]:
    """The labels (key → value) to write so the stream is labelled for `partitions`; {} if none.

    A label with a wrong value (edited by hand, copied from another stream) is
    rewritten too: a worker selecting on it would otherwise never see the stream.
    """
    want = labels_for(namespace, name, partitions)
    have = labels or {}
    return {key: value for key, value in want.items() if have.get(key) != value}


def unlabelled_selector(partitions: int) -> str:
    """A label selector matching the streams not yet labelled for a ring of `partitions`."""
    return f"!{label_key(partitions)}"


def selectors(partitions: int, mine: Iterable[int]) -> dict[int, str]:
    """Label selectors that together match exactly the streams of partitions `mine`.

    Keyed by bucket: partitions [b*VALUES_PER_SELECTOR, (b+1)*VALUES_PER_SELECTOR)
    share one selector, so a worker gaining or losing one partition restarts
    (and re-lists) only that bucket's watch, not every watch it holds.
    """
    key = label_key(partitions)
    buckets: dict[int, list[int]] = {}
    for p in sorted(set(mine)):
        if not 0 <= p < partitions:
            raise ValueError(f"partition {p} is outside a ring of {partitions}")
        buckets.setdefault(p // VALUES_PER_SELECTOR, []).append(p)
    return {
        bucket: f"{key} in ({','.join(map(str, values))})" for bucket, values in buckets.items()
    }


def partition_in(labels: Mapping[str, str] | None, partitions: int) -> int | None:
    """The partition a stream's labels give for a ring of `partitions`, None if unlabelled."""
    value = (labels or {}).get(label_key(partitions))
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return number if number < partitions else None
