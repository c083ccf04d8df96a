"""CameraStream status conditions, and the status patch that writes only what changed: pure, no I/O.

Who calls this: the operator's assignment (partition, Assigned/Valid
conditions, Invalid phase) and the worker's status reporter (phase, worker,
Live/Degraded conditions). Each side owns some status fields; both build the
fields they want, and `status_patch` answers "what must be written?" — None
when nothing changed, which is what keeps the steady state free of writes.

Conditions are a list keyed by type (the CRD declares list-type map), but a
JSON merge patch replaces lists whole; so a writer sends the complete list it
computed from the current one (`merge_conditions`), guarded by the
resourceVersion it read, and retries on conflict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def now_rfc3339(now: float | None = None) -> str:
    moment = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    """A condition without its time (added by merge_conditions when it changes)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    return {"type": type_, "status": text, "reason": reason, "message": message}


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[Mapping[str, Any]],
    *,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The current list with `wanted` conditions set; lastTransitionTime moves only
    when a condition's status flips, so re-stating a condition is not a change."""
    by_type = {str(c.get("type")): dict(c) for c in current or ()}
    for want in wanted:
        old = by_type.get(str(want["type"]))
        new = dict(want)
        if old is None or old.get("status") != want["status"]:
            new["lastTransitionTime"] = now
        else:
            new["lastTransitionTime"] = old.get("lastTransitionTime", now)
        if generation is not None:
            new["observedGeneration"] = generation
        by_type[str(want["type"])] = new
    return [by_type[k] for k in sorted(by_type)]


def status_patch(
    current: Mapping[str, Any] | None, wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The fields of `wanted` whose value differs from `current`, or None.

    Conditions compare without their times: a condition whose status, reason
    and message are the same is unchanged.
    """
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        old = current.get(key)
        if key == "conditions":
            if _strip_times(old) != _strip_times(value):
                patch[key] = value
        elif old != value:
            patch[key] = value
    return patch or None


def _strip_times(conditions: Any) -> Any:
    if not isinstance(conditions, list):
        return conditions
    return sorted(
        (
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in conditions
            if isinstance(c, Mapping)
        ),
        key=lambda c: str(c.get("type")),
    )
