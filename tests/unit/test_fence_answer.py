"""The fence's answer on the wire (cluster/fence_answer.py): times restated on the
cluster's clock never come back late, and the decoder holds its bounds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.cluster import fence_answer
from camstream_worker.cluster.fence_answer import decode, encode, from_cluster, to_cluster

walls = st.floats(min_value=1e9, max_value=3e9, allow_nan=False)
offsets = st.floats(min_value=-60, max_value=60, allow_nan=False)
widths = st.floats(min_value=0, max_value=1, allow_nan=False)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(
    end=walls,
    old=offsets,
    old_width=widths,
    old_at=fractions,
    new=offsets,
    new_width=widths,
    new_at=fractions,
)
def test_an_end_crossing_machines_comes_back_no_later_than_it_was(
    end: float,
    old: float,
    old_width: float,
    old_at: float,
    new: float,
    new_width: float,
    new_at: float,
) -> None:
    """Each machine knows cluster minus its wall clock to within [low, high]; the
    true offsets lie anywhere in them. The end, restated by the old owner and
    read back by the new one, is at or before the true moment on the new owner's
    wall clock, and early by no more than the two intervals' widths."""
    old_interval = (old - old_at * old_width, old + (1 - old_at) * old_width)
    new_interval = (new - new_at * new_width, new + (1 - new_at) * new_width)
    true_on_new = end + old - new  # the same moment, on the new owner's wall clock
    restated = from_cluster(to_cluster(end, old_interval), new_interval)
    assert restated <= true_on_new + 1e-6
    assert restated >= true_on_new - old_width - new_width - 1e-6


@given(
    said=st.dictionaries(
        st.sampled_from(["", "source", "720p", "360p"]),
        st.one_of(st.none(), st.tuples(st.integers(0, 10**12), walls)),
    ),
    offset=offsets,
)
def test_an_answer_decodes_to_what_was_said(
    said: dict[str, tuple[int, float] | None], offset: float
) -> None:
    """With no uncertainty and one offset, the round trip is the identity (to float noise)."""
    decoded = decode(encode(said, (offset, offset)), (offset, offset))
    assert decoded.keys() == said.keys()
    for name, value in said.items():
        got = decoded[name]
        if value is None:
            assert got is None
        else:
            assert got is not None and got[0] == value[0]
            assert got[1] == pytest.approx(value[1], abs=1e-5)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"writers": []}',
        b'{"writers": {"": {"last": -1, "end": 1.0}}}',
        b'{"writers": {"": {"last": true, "end": 1.0}}}',
        b'{"writers": {"": {"last": 1, "end": "soon"}}}',
        b'{"writers": {"": {"last": 1, "end": Infinity}}}',
        b'{"writers": {"": {"last": 1}}}',
        json.dumps({"writers": {"x" * 64: None}}).encode(),
        json.dumps({"writers": {str(i): None for i in range(17)}}).encode(),
        b" " * (fence_answer.MAX_ANSWER_BYTES + 1),
    ],
)
def test_anything_but_a_bounded_answer_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode(body, (0.0, 0.0))
