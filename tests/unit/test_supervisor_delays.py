"""The stall watchdog's account of the event loop's own delays (supervisor.LoopDelays).

A camera's silence is measured on the loop's working time: what the loop
overslept after the camera's last packet is left out, what it overslept
before is not (that was the bug a packet landing just before a stall hid).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.supervisor import LoopDelays


def test_only_the_delays_after_the_last_packet_count() -> None:
    delays = LoopDelays(keep=100)
    delays.add(10.0, 12.0)  # the loop overslept 2 s...
    delays.add(20.0, 28.0)  # ...and later 8 s
    assert delays.since(5.0) == 10.0
    assert delays.since(11.0) == 9.0  # a packet in the middle of the first
    assert delays.since(19.9) == 8.0  # a packet just before the second
    assert delays.since(30.0) == 0.0


def test_old_spans_are_forgotten() -> None:
    delays = LoopDelays(keep=10)
    for n in range(1000):
        delays.add(n + 0.5, n + 0.6)
    assert delays.since(0.0) <= 11 * 0.1 + 1e-9


@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=30),
    st.floats(0, 120),
)
def test_since_is_the_overlap_with_the_time_after(
    spans: list[tuple[float, float]], moment: float
) -> None:
    spans = sorted(spans)
    delays = LoopDelays(keep=1e9)
    for start, length in spans:
        delays.add(start, start + length)
    expected = sum(max(0.0, start + length - max(start, moment)) for start, length in spans)
    assert abs(delays.since(moment) - expected) < 1e-6
