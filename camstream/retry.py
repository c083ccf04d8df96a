"""Retry delays: exponential, capped, optionally jittered. Pure; the one implementation.

Who calls this: the worker's supervisor between attempts of a source (with
jitter: a thousand cameras behind one failed switch must not reconnect in the
same instant), the shared API client's callers between failed requests
(kubeapi.sleep_backoff), the informers between failed lists (kubewatch), and
the operator's leader elector, ring loop and labeller after a failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Past this exponent every delay is at its cap anyway; it keeps `factor ** n`
# finite for a camera that has failed for days (2.0 ** 1024 overflows a float).
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5  # fraction of the delay that is randomised (0: exact delays)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `attempt` (1 = first retry)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        base = min(self.cap, self.initial * self.factor**exponent)
        if not self.jitter:
            return base
        spread = base * self.jitter
        draw = (rng or random).random()
        return base - spread + 2 * spread * draw
