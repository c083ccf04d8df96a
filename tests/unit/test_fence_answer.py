"""The fence's answer on the wire (cluster/fence_answer.py): times restated on the
cluster's clock never come back late, and the decoder holds its bounds."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.cluster import fence_answer
from camstream_worker.cluster.fence_answer import decode, encode, from_cluster, to_cluster
from camstream_worker.outputs.hls.sequence import TAIL_BYTES, TAIL_SEGMENTS, Said, TailSegment

walls = st.floats(min_value=1e9, max_value=3e9, allow_nan=False)
offsets = st.floats(min_value=-60, max_value=60, allow_nan=False)
widths = st.floats(min_value=0, max_value=1, allow_nan=False)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)
big = base64.b64encode(b"G" * (TAIL_BYTES // 2 + 1)).decode()  # two of these: over TAIL_BYTES


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


tails = st.lists(
    st.builds(
        TailSegment,
        st.integers(0, 10**12),
        st.floats(0.001, 30, allow_nan=False),
        st.integers(0, 10**12),
        st.one_of(st.none(), walls),
        st.booleans(),
        st.binary(max_size=600),
    ),
    max_size=TAIL_SEGMENTS,
).map(tuple)


@settings(deadline=None)  # the machine is shared: no wall-clock deadline
@given(
    said=st.dictionaries(
        st.sampled_from(["", "source", "720p", "360p"]),
        st.one_of(st.none(), st.builds(Said, st.integers(0, 10**12), walls, tails)),
    ),
    offset=offsets,
)
def test_an_answer_decodes_to_what_was_said(said: dict[str, Said | None], offset: float) -> None:
    """With no uncertainty and one offset, the round trip is the identity (to float
    noise in the end; a tail comes back as it was, bytes and all)."""
    decoded = decode(encode(said, (offset, offset)), (offset, offset))
    assert decoded.keys() == said.keys()
    for name, value in said.items():
        got = decoded[name]
        if value is None:
            assert got is None
        else:
            assert got is not None and got.last == value.last
            assert got.end == pytest.approx(value.end, abs=1e-5)
            assert got.tail == value.tail


def _with_tail(*entries: object) -> bytes:
    return json.dumps({"writers": {"": {"last": 5, "end": 1.0, "tail": list(entries)}}}).encode()


GOOD_ENTRY = {"n": 5, "d": 2.0, "c": 3, "p": None, "i": True, "b": "R0dH"}


def test_a_tail_within_its_bounds_is_taken() -> None:
    (said,) = decode(_with_tail(GOOD_ENTRY), (0.0, 0.0)).values()
    assert said is not None and said.tail == (TailSegment(5, 2.0, 3, None, True, b"GGG"),)


@pytest.mark.parametrize(
    "body",
    [
        _with_tail(*[GOOD_ENTRY] * (TAIL_SEGMENTS + 1)),
        _with_tail([1, 2]),
        _with_tail({**GOOD_ENTRY, "n": -1}),
        _with_tail({**GOOD_ENTRY, "c": True}),
        _with_tail({**GOOD_ENTRY, "d": "long"}),
        _with_tail({**GOOD_ENTRY, "p": float("inf")}),
        _with_tail({**GOOD_ENTRY, "i": 1}),
        _with_tail({**GOOD_ENTRY, "b": "not base64!"}),
        _with_tail({**GOOD_ENTRY, "b": 7}),
        json.dumps({"writers": {"": {"last": 5, "end": 1.0, "tail": {}}}}).encode(),
        # More segment bytes than a tail may carry, over two writers.
        json.dumps(
            {
                "writers": {
                    w: {"last": 5, "end": 1.0, "tail": [{**GOOD_ENTRY, "b": big}]}
                    for w in ("a", "b")
                }
            }
        ).encode(),
    ],
)
def test_a_tail_out_of_bounds_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode(body, (0.0, 0.0))


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
