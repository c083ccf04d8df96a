"""The leader Lease decision table (operator/leader.py: decide)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from camstream_operator.leader import decide

NOW = 1_800_000_000.0


def lease(holder: str | None, age: float, duration: int = 15) -> dict[str, object]:
    renew = datetime.fromtimestamp(NOW - age, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}
    }


@pytest.mark.parametrize(
    ("current", "acquire", "holder"),
    [
        (None, True, None),  # no Lease yet
        (lease(None, 1), True, None),  # released by the last leader
        (lease("me", 1), True, "me"),  # renew our own
        (lease("other", 1), False, "other"),  # follow a live leader
        (lease("other", 14), False, "other"),  # still inside its term
        (lease("other", 16), True, "other"),  # expired: take over
        (lease("other", 4, duration=3), True, "other"),  # its own shorter duration counts
    ],
)
def test_decide(current: dict[str, object] | None, acquire: bool, holder: str | None) -> None:
    d = decide(current, "me", NOW, 15.0)
    assert d.acquire is acquire and d.holder == holder
