"""Refused RTMP clients: counted by reason, logged without flooding the log.

Who calls this: the listener and the front each keep one `Refusals`; their
connections report every refusal through it (a wrong key, garbage, a
timeout, a cap reached). The reasons are the fixed label set of
``camstream_rtmp_rejected_total`` (metrics/worker.py).

A flood of bad clients must not become a flood of log lines: per reason, the
first `LINES_PER_INTERVAL` refusals of each `INTERVAL` are logged in full,
the rest only counted, and the next line logged says how many were left out.
Callers pass text that is already safe (peers and redacted stream names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from camstream_worker.metrics.reasons import RTMP_REFUSAL_REASONS

__all__ = ["INTERVAL", "LINES_PER_INTERVAL", "Refusals"]

INTERVAL = 10.0
LINES_PER_INTERVAL = 5


class Refusals:
    def __init__(
        self,
        clock: Callable[[], float],
        logger: logging.Logger,
        *,
        reasons: Mapping[str, str] = RTMP_REFUSAL_REASONS,
    ) -> None:
        """`reasons`: the fixed label set (the SRT listener has its own)."""
        self._clock = clock
        self._log = logger
        self.counts = dict.fromkeys(reasons, 0)
        self._window: dict[str, tuple[float, int, int]] = {}  # reason: (start, logged, quiet)

    def refuse(self, reason: str, prefix: str, detail: str) -> None:
        """Count one refusal and log it unless this reason has had its lines lately."""
        if reason not in self.counts:
            raise ValueError(f"unknown refusal reason {reason!r}")  # a bug, not a peer
        self.counts[reason] += 1
        now = self._clock()
        start, logged, quiet = self._window.get(reason, (now, 0, 0))
        if now - start >= INTERVAL:
            start, logged = now, 0
        if logged < LINES_PER_INTERVAL:
            more = f" ({quiet} more refused as {reason} were not logged)" if quiet else ""
            self._log.warning("%s: closed: %s%s", prefix, detail, more)
            logged, quiet = logged + 1, 0
        else:
            quiet += 1
        self._window[reason] = (start, logged, quiet)

    def stats(self) -> dict[str, int]:
        return {f"refused_{reason}": count for reason, count in self.counts.items()}
