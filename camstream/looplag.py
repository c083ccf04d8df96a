"""How late the event loop runs its timers, and how much of that is the process's own stall.

Who calls this: the operator's cli.py starts `LoopLag.run` beside its other
loops and exports the figures as metrics (operator/camstream_operator/metrics.py).
A coroutine that computes for 400 ms without awaiting delays every watch,
every webhook answer and every Lease renewal behind it by as much; at fleet
scale that is how a leader loses its term. The probe sleeps `period` seconds
and records how much later than asked it woke up: the *lag*.

Lag has two causes, and only one is ours to fix: code that holds the loop (a
*stall*), and a machine with more runnable threads than cores, where the
loop's thread waits for a CPU. Linux counts the second per thread
(/proc/thread-self/schedstat, the run-queue wait); the stall is the lag less
that wait over the same interval. Both are reported, so a busy node is not
mistaken for a blocking bug, nor the other way round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

SCHEDSTAT = "/proc/thread-self/schedstat"  # cpu time, run-queue wait, timeslices (ns)


def runqueue_wait() -> float | None:
    """Seconds this thread has waited for a CPU since it started; None where unknown."""
    try:
        with open(SCHEDSTAT) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def stall_of(lag: float, waited: float | None) -> float:
    """The part of a lag the process caused itself: the lag less the CPU wait, never below 0."""
    return lag if waited is None else max(0.0, lag - waited)


class LoopLag:
    def __init__(
        self,
        *,
        period: float = 0.05,
        observe: Callable[[float, float], None] | None = None,
        waited: Callable[[], float | None] = runqueue_wait,
    ) -> None:
        self._period = period
        self._observe = observe  # called with (lag, stall) after each probe
        self._waited = waited
        self.worst = 0.0  # seconds of lag, since start
        self.worst_stall = 0.0
        self.samples = 0

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            before = self._waited()
            await asyncio.sleep(self._period)
            lag = max(0.0, time.monotonic() - asked - self._period)
            after = self._waited()
            stall = stall_of(lag, None if before is None or after is None else after - before)
            self.worst = max(self.worst, lag)
            self.worst_stall = max(self.worst_stall, stall)
            self.samples += 1
            if self._observe is not None:
                self._observe(lag, stall)
