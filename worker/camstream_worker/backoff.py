"""Reconnect delays: exponential with full jitter, capped. Pure.

Who calls this: supervisor.py between attempts. Jitter keeps a thousand
cameras behind one failed switch from reconnecting in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5  # fraction of the delay that is randomised

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `attempt` (1 = first retry)."""
        base = min(self.cap, self.initial * self.factor ** max(attempt - 1, 0))
        spread = base * self.jitter
        draw = (rng or random).random()
        return base - spread + 2 * spread * draw
