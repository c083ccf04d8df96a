"""Media sequence numbering across owners (worker/camstream_worker/outputs/hls/sequence.py).

The property: whichever owner a viewer reads, the last sequence number never
goes down. Writers are simulated as publish times: one segment per segment
duration, each late or early by up to a third of a duration (the camera paces
them, and a keyframe may arrive a little late or early).
"""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.outputs.hls.sequence import (
    SAME_CUT_SECONDS,
    TAIL_SEGMENTS,
    FirstNumber,
    SequenceStart,
    TailSegment,
    after_crash,
    by_clock,
    cluster_lead,
    follow_on,
    lead_of,
    outrun,
    usable_tail,
)

EPOCH = 1_790_000_000.0


def publish_times(start: float, segment: int, jitter: list[float]) -> list[float]:
    """When a writer whose first cut is at `start` publishes its segments."""
    times = [start + k * segment + j * segment / 3 for k, j in enumerate(jitter)]
    times[0] = start
    return [max(times[: k + 1]) for k in range(len(times))]  # monotone


def last_number(first: int, times: list[float], at: float) -> int | None:
    published = sum(1 for t in times if t <= at)
    return first + published - 1 if published else None


jitters = st.lists(st.floats(-1.0, 1.0), min_size=12, max_size=12)


@given(
    segment=st.sampled_from([1, 2, 6]),
    old_first=st.integers(0, 10**9),
    old_start=st.floats(0, 1000),
    old_jitter=jitters,
    read_after=st.floats(0.5, 6),
    cut_delay=st.floats(1, 10),
    new_jitter=jitters,
)
def test_a_new_owner_outruns_the_old_one_from_its_first_segment(
    segment: int,
    old_first: int,
    old_start: float,
    old_jitter: list[float],
    read_after: float,
    cut_delay: float,
    new_jitter: list[float],
) -> None:
    old_times = publish_times(EPOCH + old_start, segment, old_jitter)
    read_at = old_times[0] + read_after * segment  # the new owner reads the old playlist
    old_last = last_number(old_first, old_times, read_at)
    source_next = old_first if old_last is None else old_last + 1
    start = SequenceStart(source_next, ahead_of=read_at)
    first_cut = read_at + cut_delay * segment / 2
    new_first = start.first(first_cut, segment)
    new_times = publish_times(first_cut, segment, new_jitter)
    for moment in sorted(t for t in old_times + new_times if t >= first_cut):
        new_last = last_number(new_first, new_times, moment)
        old_last = last_number(old_first, old_times, moment)
        assert new_last is not None
        assert old_last is None or new_last >= old_last, (moment, new_last, old_last)


@given(
    segment=st.sampled_from([1, 2, 6]),
    first=st.integers(-50, 50),
    start=st.floats(0, 1000),
    jitter=jitters,
    died_after=st.floats(0, 11),
    detected_after=st.floats(0, 30),
)
def test_a_failover_starts_above_whatever_the_dead_owner_published(
    segment: int,
    first: int,
    start: float,
    jitter: list[float],
    died_after: float,
    detected_after: float,
) -> None:
    cut = EPOCH + start
    first_number = by_clock(cut, segment) + first  # any lead, as handoffs leave it
    times = publish_times(cut, segment, jitter)
    lead = lead_of(first_number, cut, segment)
    died = cut + died_after * segment
    dead_last = last_number(first_number, times, died)
    assert dead_last is not None
    assert after_crash(died + detected_after, segment, lead) > dead_last


def test_a_fresh_start_numbers_by_the_clock() -> None:
    assert after_crash(1000.0, 2, None) == 500
    assert SequenceStart(500).first(5000.0, 2) == 500  # no previous owner: nothing to outrun


def test_outrun_grows_with_the_time_the_old_owner_kept_writing() -> None:
    assert outrun(100, 10.0, 10.0, 2) == 102
    assert outrun(100, 10.0, 13.9, 2) == 103
    assert outrun(100, 10.0, 9.0, 2) == 102  # a clock step back counts as no time


def test_all_writers_of_a_stream_get_the_same_first_number() -> None:
    shared = FirstNumber(SequenceStart(7, ahead_of=0.0))
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(shared.resolve(float(n), 1)))
        for n in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


@given(
    segment=st.sampled_from([1, 2, 6]),
    skew_old=st.floats(-3600, 3600),
    skew_new=st.floats(-3600, 3600),
    # Each worker's estimate of (cluster - its wall clock): an interval of up
    # to 1.5 s around the truth (cluster/clock.py keeps the truth inside).
    below_old=st.floats(0, 1.5),
    above_old=st.floats(0, 1.5),
    below_new=st.floats(0, 1.5),
    above_new=st.floats(0, 1.5),
    handoff_lead=st.integers(0, 50),
    first_cut_after=st.floats(0, 20),
    jitter=jitters,
    died_after=st.floats(0, 11),
    detected_after=st.floats(0, 30),
    new_cut_after=st.floats(0, 60),
)
def test_a_failover_starts_above_the_dead_owner_whatever_their_clocks(
    segment: int,
    skew_old: float,
    skew_new: float,
    below_old: float,
    above_old: float,
    below_new: float,
    above_new: float,
    handoff_lead: int,
    first_cut_after: float,
    jitter: list[float],
    died_after: float,
    detected_after: float,
    new_cut_after: float,
) -> None:
    """Two workers whose wall clocks are up to an hour off the cluster's, each way.

    The dead owner planned by the cluster's clock (plus any lead a handoff
    left it), cut its first segment when its camera came, and recorded its
    lead against the cluster's clock; the taker plans from that record, by
    its own reading of the cluster's clock, and cuts when its camera comes.
    """
    planned = EPOCH  # cluster time at which the old owner planned
    old_wall = planned + skew_old
    low_old, high_old = -skew_old - below_old, -skew_old + above_old
    start = SequenceStart(
        after_crash(old_wall + high_old, segment, None) + handoff_lead, at=old_wall
    )
    cut = planned + first_cut_after  # cluster time of its first segment
    first = start.first(cut + skew_old, segment)
    recorded = cluster_lead(lead_of(first, cut + skew_old, segment), low_old, segment)
    times = publish_times(cut, segment, jitter)
    died = cut + died_after * segment
    dead_last = last_number(first, times, died)
    assert dead_last is not None
    taker_planned = died + detected_after
    new_wall = taker_planned + skew_new
    high_new = -skew_new + above_new
    assert -skew_new - below_new <= high_new
    taker = SequenceStart(after_crash(new_wall + high_new, segment, recorded), at=new_wall)
    taker_first = taker.first(new_wall + new_cut_after, segment)
    assert taker_first > dead_last, (taker_first, dead_last)


def test_a_plan_follows_the_clock_until_the_first_segment() -> None:
    """A pushed stream waits for its camera: its first number is the clock's then."""
    plan = SequenceStart(500, at=1000.0)
    assert plan.first(1000.0, 2) == 500
    assert plan.first(1041.0, 2) == 520
    assert plan.first(990.0, 2) == 500  # a clock step back counts as no time


# -- the fence: a new owner's provisional numbers follow the old owner's last


@given(
    segment=st.sampled_from([1, 2, 6]),
    old_first=st.integers(0, 10**9),
    old_count=st.integers(1, 12),
    old_start=st.floats(0, 1000),
    old_jitter=jitters,
    new_after=st.floats(0, 4),
    new_jitter=jitters,
    new_count=st.integers(0, 8),
    lead=st.integers(0, 5),
)
def test_a_fenced_handoff_continues_the_old_owners_numbers_without_a_hole(
    segment: int,
    old_first: int,
    old_count: int,
    old_start: float,
    old_jitter: list[float],
    new_after: float,
    new_jitter: list[float],
    new_count: int,
    lead: int,
) -> None:
    # The old owner published old_count segments and was fenced; the new one,
    # started while it ran, listed new_count segments numbered provisionally
    # `lead` past the old owner's last (outrun's skip).
    old_cuts = publish_times(old_start + segment, segment, old_jitter)[:old_count]
    last = old_first + old_count - 1
    new_cuts = publish_times(old_cuts[0] + new_after + segment, segment, new_jitter)[:new_count]
    provisional = last + 1 + lead
    ends = [(provisional + k, t) for k, t in enumerate(new_cuts)]
    plan = follow_on(ends, last, old_cuts[-1])

    kept = list(plan.numbers)
    # A suffix of the listed segments, in order: the picture has no hole.
    assert kept == [n for n, _ in ends][len(ends) - len(kept) :]
    assert list(plan.numbers.values()) == list(range(last + 1, last + 1 + len(kept)))
    assert plan.next_sequence == last + 1 + len(kept)
    assert sorted((*kept, *plan.dropped)) == [n for n, _ in ends]
    # What it drops the old owner had published; what it keeps, it had not.
    for number, end in ends:
        assert (number in plan.dropped) == (end <= old_cuts[-1] + SAME_CUT_SECONDS)
    # The first kept segment is a discontinuity numbered above every one the
    # old owner used (those are never above its sequence numbers, at most
    # `last`), and never above its own sequence number.
    first_discontinuity = plan.discontinuity_sequence + 1
    assert first_discontinuity > last
    assert first_discontinuity <= last + 1


def test_follow_on_drops_what_the_old_owner_covered_and_renumbers_the_rest() -> None:
    # Old owner: ..., 100 cut at t=50. New owner listed 103 (t=48.9), 104 (t=50.1, the
    # same keyframe), 105 (t=52.1), 106 (t=54).
    plan = follow_on([(103, 48.9), (104, 50.1), (105, 52.1), (106, 54.0)], 100, 50.0)
    assert plan.numbers == {105: 101, 106: 102}
    assert plan.dropped == (103, 104)
    assert plan.next_sequence == 103
    assert plan.discontinuity_sequence == 100


def test_follow_on_of_an_owner_cutting_at_the_same_keyframes_drops_all_it_listed() -> None:
    plan = follow_on([(103, 48.0), (104, 50.1)], 100, 50.0)
    assert plan.numbers == {} and plan.dropped == (103, 104)
    assert plan.next_sequence == 101


def test_follow_on_before_the_first_cut_starts_right_after_the_old_owner() -> None:
    plan = follow_on([], 100, 50.0)
    assert plan.numbers == {} and plan.next_sequence == 101


# -- the old owner's tail, listed by the new owner in front of its own


def _tail(numbers: list[int], ccs: list[int]) -> list[TailSegment]:
    return [TailSegment(n, 2.0, c, None, True, b"") for n, c in zip(numbers, ccs, strict=True)]


@settings(deadline=None)  # the machine is shared: no wall-clock deadline
@given(
    last=st.integers(10, 10**9),
    count=st.integers(1, TAIL_SEGMENTS),
    steps=st.lists(st.integers(0, 1), min_size=TAIL_SEGMENTS, max_size=TAIL_SEGMENTS),
    below=st.integers(0, 5),
)
def test_a_tail_as_an_old_owner_lists_it_is_usable(
    last: int, count: int, steps: list[int], below: int
) -> None:
    numbers = list(range(last - count + 1, last + 1))
    first_cc = numbers[0] - below
    ccs = list(itertools.accumulate(steps[: count - 1], initial=first_cc))
    tail = _tail(numbers, ccs)
    assert usable_tail(tail, last) == tuple(tail)


@pytest.mark.parametrize(
    ("numbers", "ccs"),
    [
        ([8, 9], [8, 8]),  # does not end at the old owner's last (10)
        ([8, 10], [8, 8]),  # a hole
        ([9, 10], [9, 8]),  # a discontinuity number going down
        ([9, 10], [7, 9]),  # ... or up by two (one segment adds at most one)
        ([9, 10], [9, 11]),  # ... or above its sequence number
        ([], []),
    ],
)
def test_any_other_tail_is_not_listed(numbers: list[int], ccs: list[int]) -> None:
    assert usable_tail(_tail(numbers, ccs), 10) == ()
