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
- A failover after a crash: nobody can be asked, and an owner that took the
  stream over in a handoff runs ahead of the clock by its lead. Each serving
  worker records that lead in the stream's status once (`lead_of`), and the
  next owner starts above the clock by more than it (`after_crash`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# Publishing is paced by the camera, not by us: allow one segment of jitter.
JITTER_SEGMENTS = 1


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


def lead_of(sequence: int, written_at: float, segment_seconds: int) -> int:
    """How far a writer's numbers run ahead of the clock, from one of its segments."""
    return sequence - by_clock(written_at, segment_seconds)


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
    the wall time `ahead_of`, and the first segment must outrun it.
    """

    number: int
    ahead_of: float | None = None

    def first(self, now: float, segment_seconds: int) -> int:
        if self.ahead_of is None:
            return self.number
        return outrun(self.number, self.ahead_of, now, segment_seconds)


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
