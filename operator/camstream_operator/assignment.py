"""What the operator wants on one CameraStream: pure, no I/O.

Who calls this: streamsync.py, for every CameraStream event while this replica
leads (and for every known stream when it becomes leader). It answers with the
label and status fields to write — None when the resource is already right, so
a restart or a re-list writes nothing.

The operator owns: the partition label `camstream.io/partition` (workers watch
their partitions by label selector), status.partition, status.playbackPath,
status.observedGeneration, the Valid and Assigned conditions, the Invalid
phase (spec refused by camstream/spec.py beyond the schema), the Stopped phase
of a disabled stream, and the first status.worker. Everything about running
(phase Connecting/Live/..., worker on handoff, Live/Degraded) is the serving
worker's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from camstream import ring
from camstream.conditions import condition, merge_conditions, status_patch
from camstream.handoff import RingDoc
from camstream.spec import SpecError, parse_stream
from camstream.wire import PARTITION_LABEL, playlist_path


@dataclass(frozen=True, slots=True)
class Notice:
    """An Event to post on the CameraStream (never contains secrets)."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class StreamChanges:
    labels: dict[str, str] | None
    status: dict[str, Any] | None
    notice: Notice | None


def assess(
    body: Mapping[str, Any], *, partitions: int, doc: RingDoc | None, now: str
) -> StreamChanges:
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    status = body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    partition = ring.partition_of(ring.stream_key(namespace, name), partitions)
    labels = meta.get("labels") or {}
    label_patch = (
        {PARTITION_LABEL: str(partition)} if labels.get(PARTITION_LABEL) != str(partition) else None
    )
    wanted: dict[str, Any] = {
        "partition": partition,
        "playbackPath": playlist_path(namespace, name),
        "observedGeneration": generation,
    }
    notice: Notice | None = None
    try:
        spec = parse_stream(body, default_namespace=namespace)
    except SpecError as err:
        # SpecError messages name the field and never echo a secret or a URL.
        message = str(err)
        wanted.update(phase="Invalid", reason="InvalidSpec", message=message)
        conds = [condition("Valid", False, "InvalidSpec", message)]
        if status.get("phase") != "Invalid" or status.get("message") != message:
            notice = Notice("Warning", "InvalidSpec", message)
    else:
        conds = [condition("Valid", True, "SpecAccepted")]
        if not spec.enabled:
            wanted.update(phase="Stopped", reason="Disabled", message="spec.enabled is false")
        elif status.get("phase") in (None, "Invalid") or status.get("reason") == "Disabled":
            wanted.update(phase="Pending", reason="", message="")
        owner = doc.serving[partition] if doc is not None and doc.partitions == partitions else ""
        # The owner is not named here: it changes on every handoff, and this
        # condition must not need rewriting then (the worker field says it).
        conds.append(condition("Assigned", True, "Partitioned", f"partition {partition}"))
        if owner and not status.get("worker"):
            wanted["worker"] = owner
        if label_patch is not None:
            where = f"served by {owner}" if owner else "waiting for a worker"
            notice = Notice("Normal", "Assigned", f"partition {partition}, {where}")
    # Times move only on a flip, and status_patch compares without them.
    wanted["conditions"] = merge_conditions(
        status.get("conditions"), conds, now=now, generation=generation
    )
    return StreamChanges(labels=label_patch, status=status_patch(status, wanted), notice=notice)
