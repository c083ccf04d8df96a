"""The recorded timeline merged from several writers, and retention: properties.

Two owners record one stream during a make-before-break handoff, a crash
leaves a gap, a reconnect starts a new session. Whatever the objects and
the order they were listed in, the merged timeline keeps no segment twice
(no two pieces share more than `replay_bound`), loses no time beyond
GAP_MS, replays at most one segment (less GAP_MS) where the writer changes,
and marks every break as a discontinuity.
"""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camstream.recording import retention, timeline
from camstream.recording.groupfile import Entry

PROFILE = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])


def writer_pieces(writer: str, start: int, count: int, seq0: int, seg: int) -> list[timeline.Piece]:
    """One writer's segments, in groups of five per object, with ±jitter in the start."""
    pieces = []
    for i in range(count):
        jitter = (hash((writer, i)) % 41) - 20  # deterministic: ±20 ms
        at = start + i * seg + (jitter if i else 0)
        key = f"ns/cam/h/{start + (i // 5) * 5 * seg:013d}-{writer}.ts"
        entry = Entry((i % 5) * 1000, 1000, seg, at, seq0 + i, discontinuity=False)
        pieces.append(timeline.Piece(key, entry, writer))
    return pieces


handoffs = st.tuples(
    st.integers(3, 40),  # old owner's segments
    st.integers(1, 30),  # overlap in segments (make before break: at least one)
    st.integers(3, 40),  # new owner's segments after the overlap
    st.sampled_from([1000, 2000, 4000]),
    st.integers(0, 2**32),
)


@PROFILE
@given(handoffs)
def test_a_handoff_merges_to_one_timeline_without_gap_or_duplicate(case: tuple) -> None:
    old_count, overlap, new_count, seg, seed = case
    overlap = min(overlap, old_count - 1)
    t0 = 1_800_000_000_000
    old = writer_pieces("old", t0, old_count, 100, seg)
    new_start = t0 + (old_count - overlap) * seg + seg // 3  # cut at another moment
    new = writer_pieces("new", new_start, overlap + new_count, 100 + old_count + 2, seg)
    pieces = old + new
    random.Random(seed).shuffle(pieces)  # listing order must not matter
    chosen = timeline.merge(pieces)
    starts = [c.piece.start_ms for c in chosen]
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(chosen):
        shared = a.piece.end_ms - b.piece.start_ms
        assert shared <= timeline.replay_bound(b.piece), "a duplicate was kept"
        if a.piece.writer == b.piece.writer:
            assert abs(shared) <= 40  # one writer's segments follow each other
    # Nothing recorded is lost: one range from the first start to the last end.
    spans = timeline.ranges_of_chosen(chosen)
    assert spans == [(old[0].start_ms, max(p.end_ms for p in new))]
    # Exactly one break: where the old owner's pieces end and the new one's begin.
    writers = [c.piece.writer for c in chosen]
    assert writers == sorted(writers, key=lambda w: w != "old")
    assert sum(c.discontinuity for c in chosen) == 1
    switch = writers.index("new")
    assert chosen[switch].discontinuity
    assert chosen == timeline.merge(sorted(pieces, key=lambda p: p.object_key))


@PROFILE
@given(st.integers(2, 30), st.integers(1, 20), st.sampled_from([1000, 2000]))
def test_a_crash_leaves_a_visible_gap(before: int, lost: int, seg: int) -> None:
    t0 = 1_800_000_000_000
    first = writer_pieces("a", t0, before, 0, seg)
    gap = lost * seg + timeline.GAP_MS + 1
    second = writer_pieces("b", first[-1].end_ms + gap, 5, 1000, seg)
    chosen = timeline.merge(first + second)
    assert len(chosen) == before + 5
    spans = timeline.ranges_of_chosen(chosen)
    assert len(spans) == 2 and spans[1][0] - spans[0][1] >= gap - 20
    assert [c.discontinuity for c in chosen].count(True) == 1


def test_within_cuts_to_the_window_and_never_opens_with_a_break() -> None:
    pieces = writer_pieces("a", 0, 10, 0, 1000) + writer_pieces("b", 20_000, 10, 50, 1000)
    inside = timeline.within(timeline.merge(pieces), 21_500, 24_900)
    assert [round(c.piece.start_ms / 1000) for c in inside] == [21, 22, 23, 24]
    assert not inside[0].discontinuity


stored = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(1, 10), st.integers(1, 1000)),
    max_size=60,
)


@PROFILE
@given(stored, st.integers(1, 500), st.one_of(st.none(), st.integers(0, 20_000)))
def test_retention_deletes_what_is_old_and_nothing_else(
    items: list[tuple[int, int, int]], age: int, cap: int | None
) -> None:
    objects = [
        retention.Stored(f"k{i}", start * 1000, duration * 1000, size)
        for i, (start, duration, size) in enumerate(items)
    ]
    now = 1_000_000
    policy = retention.Policy(max_age_ms=age * 1000, max_bytes=cap)
    doomed = set(retention.to_delete(objects, policy, now_ms=now))
    kept = [o for o in objects if o.key not in doomed]
    cutoff = now - policy.max_age_ms
    assert all(o.end_ms >= cutoff for o in kept)  # everything old went
    if cap is None:
        assert all(o.end_ms < cutoff for o in objects if o.key in doomed)  # and only that
    else:
        assert sum(o.size for o in kept) <= cap
        # Under the cap, only what is older than everything kept went.
        young_doomed = [o for o in objects if o.key in doomed and o.end_ms >= cutoff]
        if kept:
            oldest_kept = min((o.start_ms, o.key) for o in kept)
            assert all((o.start_ms, o.key) <= oldest_kept for o in young_doomed)
