"""Where a stream's HLS media sequence begins on a worker: pure, no I/O.

Who calls this: cluster/desired.py decides a `SequenceStart` when a worker
starts a stream; writer.py resolves it when the stream's first segment is cut.

Why it matters: whoever serves a stream's playlist, a viewer must never see
its last sequence number go down. Three cases:

- A fresh start numbers from the wall clock, one number per segment duration
  since the epoch (`by_clock`). A writer publishes at most one segment per
  segment duration, so it never gets far ahead of the clock on its own.
- A handoff (make before break): the previous owner keeps writing until the
  new owner is live and the ring moves viewers over. Numbering "like the old
  owner" is not enough: the two cut segments at different moments, so the old
  owner can publish N+1 while the new one has only N, and a viewer who saw
  N+1 would then see N. So the new owner numbers its first segment above
  anything the old owner can have published by then (`outrun`), from the old
  owner's next number read from its playlist and the time elapsed since.
- Then the fence (`follow_on`): outrunning leaves a hole of one or two
  numbers between the old owner's last segment and the new owner's first,
  and hls.js, placing a playlist that shares no number with the one before
  by number times target duration, leaves that many segments of hole in its
  buffer and stalls on it (0.2-1.9 s). So the new owner's numbers are
  provisional, and no viewer sees them (its playlist is not published yet):
  once it serves the stream it asks the old owner to stop publishing and to
  say its last number L and where that segment ended; the new owner drops
  the segments the old one already covered and renumbers the rest from
  L + 1, so a viewer's playlist runs on without a gap. The answer also
  carries the old owner's newest segments (TAIL_SEGMENTS, with their
  bytes), which the new owner lists in front of its own: a viewer whose
  last playlist came from the old owner has often not seen L, and a
  playlist starting at L + 1 left it a hole of a segment. With no answer (the
  old owner crashed or cannot be reached) the provisional numbers are
  published as they are: above the old owner's, as before the fence.
- A failover after a crash: nobody can be asked, and an owner that took the
  stream over in a handoff runs ahead of the clock by its lead. Each serving
  worker records that lead in the stream's status once (`lead_of`), and the
  next owner starts above the clock by more than it (`after_crash`).

Which clock: the crash case compares a number the dead owner derived from
its clock with one the taker derives from its own, so both must read the
same clock. Machines' wall clocks are seconds apart (a taker 8 s behind
started 8 segments low: every viewer saw the sequence go back, #14), so the
cluster agent numbers by the cluster's clock, the API server's as read from
its Date headers (cluster/clock.py), known to within an interval: it plans
with the interval's upper end and records leads against its lower end
(`cluster_lead`), so the error only ever makes a taker start higher. The
handoff case needs no shared clock: `outrun` measures elapsed time on one
machine. The writer resolves a plan on its own machine's wall clock at its
first segment (`SequenceStart.at`), which may be much later than the plan
(a pushed stream waits for its camera).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

# Publishing is paced by the camera, not by us: allow one segment of jitter.
JITTER_SEGMENTS = 1
# Two owners cutting at the same keyframe see it arrive this close together
# (two sessions from one camera, or one stream forked by the edge); a cut
# later than the old owner's last by more is one it did not cover.
SAME_CUT_SECONDS = 0.5


# The newest segments an old owner hands its new owner at the fence, at most
# this many and these many bytes per stream: a player whose last playlist
# came from the old owner may not have seen its last one or two (it refreshes
# once per target duration, and a refresh that reaches the new owner first is
# held until it has a playlist). Listed again by the new owner, in front of
# its own, they give that player's next playlist a number it knows, so
# hls.js slides on by sequence number and loads the ones it missed. Without
# them it saw a playlist sharing nothing with the last, one number past a
# segment it never loaded: a hole of a segment in its buffer, and a stall.
TAIL_SEGMENTS = 3
TAIL_BYTES = 8 * 1024 * 1024  # 3 segments of 2 s at ~11 Mbit/s


class TailSegment(NamedTuple):
    """One of the old owner's last listed segments, with its bytes (MPEG-TS only)."""

    sequence: int
    duration: float
    discontinuity_number: int  # its EXT-X-DISCONTINUITY-SEQUENCE-counted number there
    program_date_time: float | None
    independent: bool
    data: bytes


class Said(NamedTuple):
    """What one writer of the old owner said: its last number, the wall time that
    segment was cut, and its newest segments (oldest first, the last one `last`)."""

    last: int
    end: float
    tail: tuple[TailSegment, ...] = ()


# What the fence says about one stream (its old owner's writers, by folder
# under the stream's, "" for its own), or None where a writer published nothing.
Fenced = dict[str, Said | None]


def usable_tail(tail: Sequence[TailSegment], last: int) -> tuple[TailSegment, ...]:
    """The tail a new owner can list in front of its own segments: consecutive
    numbers ending at the old owner's `last`, discontinuity numbers never going
    down nor above their sequence numbers; anything else is not listed at all."""
    numbers = [t.sequence for t in tail]
    if not tail or numbers != list(range(last - len(tail) + 1, last + 1)):
        return ()
    ccs = [t.discontinuity_number for t in tail]
    if any(b - a not in (0, 1) for a, b in itertools.pairwise(ccs)) or any(
        t.discontinuity_number > t.sequence for t in tail
    ):
        return ()
    return tuple(tail)


def by_clock(now: float, segment_seconds: int) -> int:
    return int(now // segment_seconds)


def outrun(source_next: int, observed_at: float, now: float, segment_seconds: int) -> int:
    """A first number above every segment an owner still writing can have published.

    `source_next` is the number its next segment would carry, read at
    `observed_at`. Since then it can have published the segment in progress
    plus one per full segment duration.
    """
    elapsed = max(0.0, now - observed_at)
    most_published = source_next + int(elapsed // segment_seconds)
    return most_published + 1 + JITTER_SEGMENTS


@dataclass(frozen=True, slots=True)
class FollowOn:
    """How a new owner's provisional segments continue the old owner's, once fenced.

    `numbers` maps each kept segment's provisional number to its final one
    (contiguous from the old owner's last + 1, in order); `dropped` are the
    provisional numbers the old owner had covered; `next_sequence` is the
    number of the next segment cut; `discontinuity_sequence` is the
    playlist's EXT-X-DISCONTINUITY-SEQUENCE for the kept segments, the first
    of which is marked as a discontinuity, so its discontinuity number is
    L + 1: above every one the old owner used (never above its sequence
    numbers, see writer.py).
    """

    numbers: dict[int, int]
    dropped: tuple[int, ...]
    next_sequence: int
    discontinuity_sequence: int


def follow_on(ends: Sequence[tuple[int, float]], source_last: int, source_end: float) -> FollowOn:
    """Renumber a new owner's listed segments to follow the old owner's last one.

    `ends`: the listed segments, oldest first, as (provisional number, end),
    where the end is on the same clock as `source_end`, the end of the old
    owner's last segment `source_last`. A segment that ended by then (within
    SAME_CUT_SECONDS) was covered by the old owner and is dropped. When both
    cut at the same keyframes (a forked pushed stream) that is every listed
    one: the next segment cut is the first after the old owner's last.
    """
    kept = [n for n, end in ends if end > source_end + SAME_CUT_SECONDS]
    first = source_last + 1
    return FollowOn(
        numbers={old: first + i for i, old in enumerate(kept)},
        dropped=tuple(n for n, _ in ends if n not in kept),
        next_sequence=first + len(kept),
        discontinuity_sequence=source_last,
    )


def lead_of(sequence: int, written_at: float, segment_seconds: int) -> int:
    """How far a writer's numbers run ahead of the clock, from one of its segments."""
    return sequence - by_clock(written_at, segment_seconds)


def cluster_lead(local_lead: int, wall_offset_low: float, segment_seconds: int) -> int:
    """A lead measured on this machine's wall clock, restated on the cluster's (at least).

    `local_lead` is n - by_clock(w) for a segment n cut at our wall time w; the
    cluster's clock read w + o then, with o >= `wall_offset_low`. Since
    floor((w + o) / s) >= floor(w / s) + floor(o / s) >= floor(w / s) +
    floor(low / s), the result is never below the true lead on the cluster's
    clock: a successor starting above it starts above this writer.
    """
    return local_lead - math.floor(wall_offset_low / segment_seconds)


def after_crash(now: float, segment_seconds: int, lead: int | None) -> int:
    """First number for a stream whose owner died, given the lead it recorded.

    After publishing N at t the dead owner published at most one more per
    segment duration (plus jitter), so by `now` its last number is at most
    by_clock(now) + lead + jitter.
    """
    clock = by_clock(now, segment_seconds)
    if lead is None:
        return clock
    return clock + max(0, lead + JITTER_SEGMENTS + 1)


@dataclass(frozen=True, slots=True)
class SequenceStart:
    """The plan for a stream's first number, sent to the process that runs it.

    `number` is the least the first segment may carry. With `ahead_of` set, a
    previous owner is still writing: `number` is its next number as read at
    the wall time `ahead_of`, and the first segment must outrun it. With `at`
    set, `number` was right at the wall time `at` and moves on with the clock,
    one per segment duration, until the first segment is cut. Both times are
    this machine's wall clock, as the writer's `now` is.
    """

    number: int
    ahead_of: float | None = None
    at: float | None = None

    def first(self, now: float, segment_seconds: int) -> int:
        if self.ahead_of is not None:
            return outrun(self.number, self.ahead_of, now, segment_seconds)
        if self.at is not None:
            return self.number + int(max(0.0, now - self.at) // segment_seconds)
        return self.number


class FirstNumber:
    """One resolution of a `SequenceStart`, shared by every writer of a stream.

    An ABR ladder's renditions (and its passthrough copy) must number their
    segments alike; whichever cuts its first segment first fixes the number.
    """

    def __init__(self, start: SequenceStart) -> None:
        self.start = start
        self._resolved: int | None = None
        self._lock = threading.Lock()

    def resolve(self, now: float, segment_seconds: int) -> int:
        with self._lock:
            if self._resolved is None:
                self._resolved = self.start.first(now, segment_seconds)
            return self._resolved
