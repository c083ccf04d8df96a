"""How late the event loop runs its timers: the stall an async process inflicts on itself.

Who calls this: the operator's cli.py and the worker's cluster cli.py start
`LoopLag.run` beside their other loops and export its figures as metrics.
A coroutine that computes for 400 ms without awaiting delays every watch,
every webhook answer and every Lease renewal behind it by as much; at fleet
scale that is how a leader loses its term. The probe sleeps `period` seconds
and records how much later than asked it woke up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LoopLag:
    def __init__(
        self,
        *,
        period: float = 0.05,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._period = period
        self._observe = observe
        self.worst = 0.0  # seconds, since start
        self.samples = 0

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self._period)
            lag = max(0.0, time.monotonic() - asked - self._period)
            self.worst = max(self.worst, lag)
            self.samples += 1
            if self._observe is not None:
                self._observe(lag)
