"""Leader election by observation (operator/leader.py: decide and Sighting)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream_operator.leader import Sighting, decide


def lease(holder: str | None, duration: int = 15, renew: str = "2026-12-03T09:00:00Z") -> dict:  # type: ignore[type-arg]
    return {
        "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}
    }


@pytest.mark.parametrize(
    ("current", "unchanged_for", "acquire", "holder"),
    [
        (None, 0, True, None),  # no Lease yet
        (lease(None), 0, True, None),  # released by the last leader
        (lease("me"), 100, True, "me"),  # renew our own
        (lease("other"), 1, False, "other"),  # follow a live leader
        (lease("other"), 14.9, False, "other"),  # still inside its term, by our clock
        (lease("other"), 15.1, True, "other"),  # unchanged for its duration: take over
        (lease("other", duration=3), 4, True, "other"),  # its own shorter duration counts
    ],
)
def test_decide(
    current: dict | None,  # type: ignore[type-arg]
    unchanged_for: float,
    acquire: bool,
    holder: str | None,
) -> None:
    d = decide(current, "me", unchanged_for=unchanged_for, duration=15.0)
    assert d.acquire is acquire and d.holder == holder


@pytest.mark.parametrize("renew", ["1999-01-01T00:00:00Z", "2199-01-01T00:00:00Z"])
def test_the_leaders_clock_is_never_compared_with_ours(renew: str) -> None:
    """A leader whose clock is far behind or ahead is followed while its Lease changes."""
    assert not decide(lease("other", renew=renew), "me", unchanged_for=2, duration=15).acquire


def test_sighting_counts_time_unchanged_by_our_clock() -> None:
    s = Sighting()
    assert s.observe("1", 100.0, blind_after=7) == 0  # first sight: a full duration from now
    assert s.observe("1", 102.0, blind_after=7) == 2
    assert s.observe("2", 104.0, blind_after=7) == 0  # renewed
    assert s.observe("2", 110.0, blind_after=7) == 6
    # Could not read for 20 s (our API link was down): we saw nothing, judge nothing.
    assert s.observe("2", 130.0, blind_after=7) == 0
    assert s.observe("2", 136.0, blind_after=7) == 6


@given(st.lists(st.floats(min_value=0.1, max_value=3.0), min_size=1, max_size=50))
def test_a_leader_renewing_every_few_seconds_is_never_taken_over(gaps: list[float]) -> None:
    s = Sighting()
    now, version = 0.0, 0
    for gap in gaps:
        now += gap
        version += 1  # the leader renews between our reads
        unchanged = s.observe(str(version), now, blind_after=7)
        assert not decide(lease("other"), "me", unchanged_for=unchanged, duration=15).acquire
