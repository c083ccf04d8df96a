"""Which recorded objects a stream's retention deletes: pure.

Who calls this: the janitor (janitor.py), for each stream, with the objects
it listed and the stream's retention (from its retention.json). The rules:

1. every object that ended before now - max age goes;
2. with a byte cap, the oldest of the rest go until the rest fit under it.

Nothing else is ever deleted: an object younger than the age limit goes
only if the cap needs the room, and then only older ones before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    start_ms: int
    duration_ms: int
    size: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms


@dataclass(frozen=True, slots=True)
class Policy:
    max_age_ms: int
    max_bytes: int | None = None


def to_delete(objects: Sequence[Stored], policy: Policy, *, now_ms: int) -> list[str]:
    """Keys to delete, oldest first."""
    cutoff = now_ms - policy.max_age_ms
    ordered = sorted(objects, key=lambda o: (o.start_ms, o.key))
    expired = [o for o in ordered if o.end_ms < cutoff]
    kept = [o for o in ordered if o.end_ms >= cutoff]
    if policy.max_bytes is not None:
        total = sum(o.size for o in kept)
        while kept and total > policy.max_bytes:
            oldest = kept.pop(0)
            total -= oldest.size
            expired.append(oldest)
    return [o.key for o in expired]
