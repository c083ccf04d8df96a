"""Retry delays (camstream/retry.py) grow, stay capped and are spread by jitter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from camstream.retry import Backoff


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_delay_stays_within_jitter_of_the_capped_exponential(attempt, seed):
    backoff = Backoff(initial=0.5, factor=2.0, cap=30.0, jitter=0.5)
    base = min(30.0, 0.5 * 2 ** (attempt - 1))
    delay = backoff.delay(attempt, random.Random(seed))
    assert base * 0.5 <= delay <= base * 1.5
    assert delay <= 45.0


def test_jitter_spreads_cameras_that_failed_together():
    backoff = Backoff()
    rng = random.Random(7)
    delays = {round(backoff.delay(5, rng), 3) for _ in range(100)}
    assert len(delays) > 50


def test_without_jitter_the_delays_are_exact() -> None:
    # What the API client waits between failed requests: 1, 2, 4, 8, then 10 s.
    backoff = Backoff(initial=1.0, cap=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_camera_failing_for_days_still_gets_a_delay() -> None:
    assert Backoff().delay(100_000) <= 45.0
