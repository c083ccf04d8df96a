"""Time as the RTMP server judges clients by: its own stalls discounted, rates averaged.

Who calls this: the listener (listener.py) keeps one `StallClock` and ticks
it from its housekeeping; connections read deadlines and idleness on it and
keep a `TokenBucket` per rate they limit (messages, ping replies). Pure:
the caller passes the time in.

Why a clock of its own: when the event loop is held up (a burst of work, a
GIL-heavy thread, a paused VM), no byte is read, and on waking every
publisher looks silent. A camera must not be dropped as "no data for 30 s"
for the server's own stall, so the time the loop overslept is left out.
"""

from __future__ import annotations

__all__ = ["StallClock", "TokenBucket"]


class StallClock:
    """Loop time minus how late the loop woke up, summed since the start."""

    def __init__(self) -> None:
        self.stalled = 0.0  # seconds of the loop's own delays, in all
        self._expected: float | None = None

    def expect(self, wake_at: float) -> None:
        """The caller is about to sleep until `wake_at`."""
        self._expected = wake_at

    def woke(self, now: float) -> float:
        """The caller woke at `now`; returns how late (that is discounted from now on)."""
        late = 0.0 if self._expected is None else max(0.0, now - self._expected)
        self.stalled += late
        self._expected = None
        return late

    def time(self, now: float) -> float:
        return now - self.stalled


class TokenBucket:
    """`rate` events a second on average, `burst` at once.

    `grant` adds tokens beyond the burst: a connection is granted the
    seconds the server stalled, since what the client sent meanwhile waited
    in the kernel and arrives at once when the server wakes up.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, count: float, now: float) -> bool:
        """Spend `count` tokens if there are enough; False (and nothing spent) if not."""
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        if self._tokens < self.burst:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens < count:
            return False
        self._tokens -= count
        return True

    def grant(self, seconds: float) -> None:
        """Credit `seconds` worth of events, even past the burst."""
        self._tokens += seconds * self.rate
