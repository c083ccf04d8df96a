"""The recordings' wire formats: object keys and group objects (index trailer + footer).

Properties (hypothesis): any group packs and reads back exactly from its
last bytes alone; every segment's bytes are found at its offset; a damaged
or foreign object is refused with RecordingFormatError, never misread.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camstream.recording import RecordingFormatError, groupfile, layout
from camstream.recording.groupfile import Entry
from camstream.spec import StreamKey

PROFILE = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
KEY = StreamKey("site-a", "door.cam")

segments = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=400),
        st.integers(1, 10_000),  # duration ms
        st.integers(0, 1 << 41),  # start ms
        st.integers(0, 1 << 40),  # sequence
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@PROFILE
@given(segments)
def test_a_group_reads_back_from_its_tail(items: list[tuple[bytes, int, int, int, bool]]) -> None:
    packed = groupfile.pack(
        str(KEY), "worker-0-abc", [(d, Entry(0, len(d), du, t, q, c)) for d, du, t, q, c in items]
    )
    tail = packed[-min(len(packed), groupfile.TAIL_GUESS) :]
    needed = groupfile.footer_length(tail)
    index = groupfile.parse_trailer(packed[-needed:], len(packed))
    assert (index.stream, index.writer) == (str(KEY), "worker-0-abc")
    assert len(index.entries) == len(items)
    for entry, (data, duration, start, sequence, discontinuity) in zip(
        index.entries, items, strict=True
    ):
        assert packed[entry.offset : entry.offset + entry.size] == data  # passthrough bytes
        assert (entry.duration_ms, entry.start_ms, entry.sequence) == (duration, start, sequence)
        assert entry.discontinuity is discontinuity
    assert index.data_size == sum(len(d) for d, *_ in items)


@PROFILE
@given(segments, st.integers(0, 10_000), st.integers(1, 255))
def test_a_damaged_trailer_is_refused(
    items: list[tuple[bytes, int, int, int, bool]], at: int, flip: int
) -> None:
    packed = bytearray(
        groupfile.pack("a/b", "w", [(d, Entry(0, len(d), du, t, q, c)) for d, du, t, q, c in items])
    )
    trailer = groupfile.footer_length(bytes(packed))
    position = len(packed) - trailer + at % trailer  # somewhere in the index or footer
    packed[position] ^= flip
    try:
        index = groupfile.parse_trailer(bytes(packed), len(packed))
    except RecordingFormatError:
        return
    # A flip that still parses must have hit nothing the CRC covers: impossible.
    raise AssertionError(f"damaged trailer accepted: {index}")


def test_foreign_and_short_objects_are_refused() -> None:
    with pytest.raises(RecordingFormatError):
        groupfile.footer_length(b"\x47" * 188)  # plain MPEG-TS
    with pytest.raises(RecordingFormatError):
        groupfile.footer_length(b"CSRG")
    good = groupfile.pack("a/b", "w", [(b"x" * 10, Entry(0, 10, 1000, 5, 1))])
    with pytest.raises(RecordingFormatError):
        groupfile.parse_trailer(good, len(good) - 5)  # the index points past the data


@PROFILE
@given(
    st.integers(0, 9_999_999_999_999),
    st.integers(0, layout.MAX_DURATION_MS),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
)
def test_object_keys_read_back(start: int, duration: int, writer: str) -> None:
    name = layout.GroupName(KEY, start, duration, writer)
    key = name.object_key
    assert key.startswith("site-a/door.cam/" + layout.hour_of(start) + "/")
    assert layout.parse_object_key(KEY, key) == name
    assert layout.parse_object_key(StreamKey("site-a", "door"), key) is None
    assert (
        layout.hour_start_ms(layout.hour_of(start))
        <= start
        < (layout.hour_start_ms(layout.hour_of(start)) + 3_600_000)
    )


def test_keys_sort_in_time_order_and_hours_cover_a_range() -> None:
    a = layout.GroupName(KEY, 1_700_000_000_000, 60_000, "w").object_key
    b = layout.GroupName(KEY, 1_700_000_060_000, 60_000, "w").object_key
    assert a < b
    hours = layout.hours_between(1_700_000_000_000, 1_700_000_000_000 + 3 * 3_600_000)
    assert len(hours) == 4 and hours == sorted(hours)
    for bad in ("../x.ts", "1700000000000-0060000-W.ts", "17-0060000-w.ts", "retention.json"):
        assert layout.parse_object_name(KEY, bad) is None
    assert layout.writer_id("Worker_0.Pod!") == "worker-0-pod"
