"""What "assigned" means for one CameraStream, chosen by `--assigned`.

Who calls this: tracker.py (is this stream assigned yet?) and probes.py (the
label selector a worker watches its partitions with). The bench measures the
operator as a black box, so this is the one place that knows what the
operator's output looks like:

- `legacy` (the operator of 2026-12): the label `camstream.io/partition`
  equals partition_of("ns/name", P) and status.worker is set (the operator
  writes both, a label patch then a status patch). Workers select
  `camstream.io/partition in (...)`, or the bare label past 256 values.
- `labels` (the direction in DESIGN.md): the label `camstream.io/partition-<P>`
  carries partition_of("ns/name", P), set at admission; assignment comes from
  the ring ConfigMap, so the tracker also waits for a ring of P partitions in
  which every partition has an up owner (`needs_ring`). Workers select
  `camstream.io/partition-<P> in (...)`.

A predicate sees a compact view of the object (`extract`), not the object:
the tracker keeps one view per stream, 100k of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from camstream import partition_labels, ring, wire
from camstream.handoff_codec import CodecError, decode_doc

# The operator of 2026-12's label and its workers' cut-off for an `in` list,
# kept here so a baseline can still be measured against that operator.
PARTITION_LABEL = "camstream.io/partition"
MAX_SELECTOR_VALUES = 256

View = Any  # a small tuple, each predicate its own shape


@dataclass(frozen=True)
class Predicate:
    name: str
    needs_status: bool  # the tracker must watch whole objects, not metadata only
    needs_ring: bool  # assigned only once the ring has P partitions, all owned by up workers
    extract: Callable[[Mapping[str, Any]], View]
    satisfied: Callable[[View, str, int], bool]  # (view, "ns/name", P)
    selector: Callable[[frozenset[int], int], str]  # a worker's selector for its partitions


def sized_label(partitions: int) -> str:
    """The label that carries the partition in a ring of `partitions` (labels mode)."""
    return partition_labels.label_key(partitions)


def _in(label: str, mine: frozenset[int]) -> str:
    return f"{label} in ({','.join(map(str, sorted(mine)))})"


# -- legacy


def _legacy_extract(obj: Mapping[str, Any]) -> View:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (labels.get(PARTITION_LABEL), bool((obj.get("status") or {}).get("worker")))


def _legacy_satisfied(view: View, key: str, partitions: int) -> bool:
    label, has_worker = view
    return bool(has_worker) and label == str(ring.partition_of(key, partitions))


def _legacy_selector(mine: frozenset[int], partitions: int) -> str:
    # As that operator's worker/camstream_worker/cluster/agent.py built it.
    return PARTITION_LABEL if len(mine) > MAX_SELECTOR_VALUES else _in(PARTITION_LABEL, mine)


# -- labels


def _labels_extract(obj: Mapping[str, Any]) -> View:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    prefix = wire.PARTITION_LABEL_PREFIX
    return tuple(sorted((k, v) for k, v in labels.items() if k.startswith(prefix)))


def _labels_satisfied(view: View, key: str, partitions: int) -> bool:
    return dict(view).get(sized_label(partitions)) == str(ring.partition_of(key, partitions))


def _labels_selector(mine: frozenset[int], partitions: int) -> str:
    return _in(sized_label(partitions), mine)


PREDICATES = {
    "legacy": Predicate(
        name="legacy",
        needs_status=True,
        needs_ring=False,
        extract=_legacy_extract,
        satisfied=_legacy_satisfied,
        selector=_legacy_selector,
    ),
    "labels": Predicate(
        name="labels",
        needs_status=False,
        needs_ring=True,
        extract=_labels_extract,
        satisfied=_labels_satisfied,
        selector=_labels_selector,
    ),
}


def get(name: str) -> Predicate:
    try:
        return PREDICATES[name]
    except KeyError:
        raise ValueError(f"--assigned must be one of {sorted(PREDICATES)}, got {name!r}") from None


def ring_complete(data: Mapping[str, str] | None, partitions: int, up: Iterable[str]) -> bool:
    """The ring ConfigMap's data has `partitions` partitions, each served by an up worker."""
    if not data:
        return False
    try:
        doc = decode_doc(data)
    except CodecError:
        return False
    members = set(up)
    return doc.partitions == partitions and all(owner in members for owner in doc.serving)
