"""The cluster's clock as a worker can know it: the API server's, read from its Date headers. Pure.

Who calls this: cli.py hands `ClusterClock.observe` to the API client
(kubeapi's `on_response`), so every answer from the API server is a sample;
agent.py asks `wall_offset` where it plans a stream's first media sequence
number and records the lead it runs ahead of the clock by
(outputs/hls/sequence.py).

Why: a stream's HLS media sequence is numbered from a clock, and a worker
that takes a stream over after a crash must number above whatever the dead
owner published. If each numbers by its own wall clock, a taker whose clock
is 8 s behind starts 8 segments low and every viewer sees the sequence go
backwards (#14). The API server's clock is one clock every worker reads, so
numbering by it leaves only the error of reading it, which is bounded here.

How: an HTTP Date has one-second resolution and is stamped while the server
answers, between the moment we sent the request and the moment the answer
arrived. So the server's time S at our monotonic time m satisfies
D <= S < D + 1 for some m in [sent, received], and the offset S - m lies in
[D - received, D + 1 - sent]. Samples land at every phase of the second, so
intersecting them narrows the interval to about a round trip. The two clocks
drift apart (rates a few ppm apart, NTP slewing the server): a bound `age`
seconds old is widened by DRIFT * age before it is intersected; a sample that
agrees with nothing (the server's clock was stepped) starts afresh.

Offsets are kept against this process's monotonic clock, so the local wall
clock, however wrong, plays no part; `wall_offset` converts for callers that
stamp times with time.time() (the HLS writer does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

DRIFT = 200e-6  # seconds per second: generous for two quartz clocks and NTP slew


@dataclass(frozen=True, slots=True)
class Offset:
    """Server time minus local monotonic time lies in [low, high], as of monotonic `at`."""

    low: float
    high: float
    at: float

    @property
    def width(self) -> float:
        return self.high - self.low


def sample(date_seconds: float, sent: float, received: float) -> Offset:
    """What one answer tells: stamped `date_seconds` (whole), sent and received at these times."""
    return Offset(date_seconds - received, date_seconds + 1.0 - sent, received)


def combine(known: Offset | None, new: Offset, drift: float = DRIFT) -> Offset:
    """The narrowest interval consistent with both (the known one aged to `new.at`)."""
    if known is None:
        return new
    slack = drift * max(0.0, new.at - known.at)
    low = max(known.low - slack, new.low)
    high = min(known.high + slack, new.high)
    if low > high:
        return new  # they disagree: the server's clock was set; trust what it says now
    return Offset(low, high, max(known.at, new.at))


def parse_date(header: str | None) -> float | None:
    """An HTTP Date header as epoch seconds; None when absent or unreadable."""
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class ClusterClock:
    """The running estimate; `observe` each API answer, ask `wall_offset` when needed."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self.offset: Offset | None = None
        self.samples = 0

    def observe(self, date_header: str | None, sent: float, received: float) -> None:
        date = parse_date(date_header)
        if date is None or received < sent:
            return
        self.offset = combine(self.offset, sample(date, sent, received))
        self.samples += 1

    def wall_offset(self) -> tuple[float, float]:
        """(low, high) of cluster time minus this machine's wall clock, now.

        Before any sample: (0, 0), the local clock (a worker talks to the API
        server before it runs any stream, so this is only a fallback).
        """
        if self.offset is None:
            return 0.0, 0.0
        mono, wall = self._monotonic(), self._wall()
        slack = DRIFT * max(0.0, mono - self.offset.at)
        return (
            self.offset.low - slack + mono - wall,
            self.offset.high + slack + mono - wall,
        )
