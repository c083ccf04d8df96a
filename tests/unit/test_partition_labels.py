"""Partition labels per ring size (camstream/partition_labels.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream import partition_labels, ring

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
sizes = st.sampled_from([1 << k for k in range(0, 17)])


@given(names, names, sizes)
def test_every_label_is_the_partition_in_that_ring(ns: str, name: str, size: int) -> None:
    labels = partition_labels.labels_for(ns, name, size)
    assert set(labels) == {partition_labels.label_key(s) for s in partition_labels.sizes_from(size)}
    for key, value in labels.items():
        bigger = int(key.rsplit("-", 1)[1])
        assert int(value) == ring.partition_of(f"{ns}/{name}", bigger)
        assert partition_labels.partition_in(labels, bigger) == int(value)


@given(names, names, sizes)
def test_growing_the_ring_needs_no_new_label(ns: str, name: str, size: int) -> None:
    """Labelled for P, a stream already carries the label of every larger ring."""
    labels = partition_labels.labels_for(ns, name, size)
    for bigger in partition_labels.sizes_from(size):
        assert partition_labels.missing(labels, ns, name, bigger) == {}


def test_missing_rewrites_wrong_values_and_keeps_foreign_labels() -> None:
    labels = {"site": "north", **partition_labels.labels_for("ns", "cam", 256)}
    key = partition_labels.label_key(256)
    labels[key] = str((int(labels[key]) + 1) % 256)
    assert partition_labels.missing(labels, "ns", "cam", 256) == {
        key: str(ring.partition_of("ns/cam", 256))
    }


@given(st.sets(st.integers(0, 16383), max_size=3000))
def test_selectors_cover_exactly_the_given_partitions(mine: set[int]) -> None:
    chosen = partition_labels.selectors(16384, mine)
    named: set[int] = set()
    for selector in chosen.values():
        key, _, values = selector.partition(" in (")
        assert key == "camstream.io/partition-16384"
        part = {int(v) for v in values.rstrip(")").split(",")}
        assert len(part) <= partition_labels.VALUES_PER_SELECTOR
        named |= part
    assert named == mine


def test_limits_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="power of two"):
        partition_labels.label_key(100)
    with pytest.raises(ValueError, match="65536"):
        partition_labels.sizes_from(1 << 17)
    with pytest.raises(ValueError, match="outside"):
        partition_labels.selectors(16, [16])
