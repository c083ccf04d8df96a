"""The cluster clock read from the API server's Date headers (cluster/clock.py).

The property everything rests on: whatever the round trips and the phase of
the server's second, the true offset stays inside the estimate, and the
estimate narrows to about the best round trip.
"""

from __future__ import annotations

import math
from email.utils import formatdate

from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.cluster import clock
from camstream_worker.cluster.clock import ClusterClock, Offset

BOOT = 5000.0  # local monotonic seconds at the first request


def answer(offset: float, sent: float, rtt: float, stamp: float) -> tuple[float, float, float]:
    """(Date in whole seconds, sent, received) for a server `offset` ahead of our monotonic clock.

    The server stamps its Date at fraction `stamp` of the round trip.
    """
    received = sent + rtt
    return math.floor(sent + stamp * rtt + offset), sent, received


requests = st.lists(
    st.tuples(st.floats(0.05, 30.0), st.floats(0.0, 0.5), st.floats(0.0, 1.0)),
    min_size=1,
    max_size=60,
)


@given(offset=st.floats(1.7e9, 1.9e9), requests=requests)
def test_the_true_offset_stays_inside_and_the_width_shrinks_to_a_round_trip(
    offset: float, requests: list[tuple[float, float, float]]
) -> None:
    known: Offset | None = None
    now = BOOT
    for gap, rtt, stamp in requests:
        now += gap
        date, sent, received = answer(offset, now, rtt, stamp)
        known = clock.combine(known, clock.sample(date, sent, received))
        slack = clock.DRIFT * (now - BOOT)
        assert known.low - slack <= offset <= known.high + slack, (known, offset)
    assert known is not None
    # Old bounds widen on both sides by DRIFT per second up to the last answer's arrival.
    aged = 2 * clock.DRIFT * (received - BOOT)
    assert known.width <= 1.0 + min(r for _, r, _ in requests) + aged + 1e-6


@given(offset=st.floats(1.7e9, 1.9e9), rate=st.floats(-100e-6, 100e-6), gaps=requests)
def test_a_drifting_server_clock_stays_inside(
    offset: float, rate: float, gaps: list[tuple[float, float, float]]
) -> None:
    known: Offset | None = None
    now = BOOT
    for gap, rtt, stamp in gaps:
        now += gap * 20  # minutes apart: drift adds up
        true = offset + rate * (now - BOOT)
        date, sent, received = answer(true, now, rtt, stamp)
        known = clock.combine(known, clock.sample(date, sent, received))
        assert known.low - 1e-3 <= true <= known.high + 1e-3, (known, true)


def test_a_stepped_server_clock_starts_afresh() -> None:
    known = clock.combine(None, clock.sample(1000.0, 10.0, 10.1))
    stepped = clock.combine(known, clock.sample(2000.0, 11.0, 11.1))  # set 1000 s ahead
    assert stepped == clock.sample(2000.0, 11.0, 11.1)


def test_the_local_wall_clock_plays_no_part() -> None:
    """Two workers whose wall clocks are 8 s apart agree on the cluster's time."""
    server = 1_790_000_000.0  # server time at our monotonic BOOT
    readings = [_read_cluster_time(server, skew) for skew in (+8.0, -8.0)]
    for low, high in readings:
        assert low <= server + 300.0 <= high and high - low < 0.3


def _read_cluster_time(server: float, skew: float) -> tuple[float, float]:
    """40 answers 5.3 s apart, then the cluster's time 300 s after BOOT as (low, high)."""
    mono = [BOOT]
    c = ClusterClock(monotonic=lambda: mono[0], wall=lambda: server + mono[0] - BOOT + skew)
    for k in range(40):
        sent = BOOT + k * 5.3
        date = formatdate(math.floor(server + sent - BOOT + 0.05), usegmt=True)
        c.observe(date, sent, sent + 0.1)
    mono[0] = BOOT + 300.0
    low, high = c.wall_offset()
    wall = server + 300.0 + skew
    return wall + low, wall + high


def test_unreadable_dates_are_ignored() -> None:
    c = ClusterClock()
    c.observe(None, 1.0, 2.0)
    c.observe("yesterday", 1.0, 2.0)
    assert c.offset is None and c.wall_offset() == (0.0, 0.0)
