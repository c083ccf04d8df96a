"""Bring one CameraStream in line with assignment.assess: label, status, Event.

Who calls this: handlers/handle_camerastream.py on every watch event while this
replica leads, and runtime.py for every known stream when it becomes leader.
Writes happen only when assess asks for them. The status patch carries the
resourceVersion it was computed from (the conditions list is written whole),
so a concurrent worker write makes it fail with Conflict; we then re-read and
recompute, a few times at most.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from camstream import kubeapi
from camstream.conditions import now_rfc3339
from camstream.handoff import RingDoc

from . import assignment, events

log = logging.getLogger("camstream.operator.streams")


async def sync_stream(
    api: kubeapi.KubeApi,
    body: Mapping[str, Any],
    *,
    partitions: int,
    doc: RingDoc | None,
    attempts: int = 4,
) -> None:
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    if meta.get("deletionTimestamp"):
        return  # going away: the worker stops it when it leaves the watch
    current: Mapping[str, Any] = body
    for attempt in range(attempts):
        changes = assignment.assess(current, partitions=partitions, doc=doc, now=now_rfc3339())
        try:
            if changes.labels is not None:
                current = await api.patch(
                    kubeapi.stream_path(namespace, name),
                    {"metadata": {"labels": changes.labels}},
                )
            if changes.status is not None:
                version = current["metadata"]["resourceVersion"]
                await api.patch(
                    kubeapi.stream_path(namespace, name, status=True),
                    {"metadata": {"resourceVersion": version}, "status": changes.status},
                )
        except kubeapi.NotFound:
            return
        except kubeapi.Conflict:
            log.debug("%s/%s changed while we wrote (attempt %d)", namespace, name, attempt + 1)
            current = await api.get(kubeapi.stream_path(namespace, name))
            continue
        if changes.notice is not None:
            notice = changes.notice
            await events.post(
                api, current, type_=notice.type, reason=notice.reason, message=notice.message
            )
        if changes.labels is not None or changes.status is not None:
            log.info("%s/%s: updated %s", namespace, name, _what(changes))
        return
    log.warning("%s/%s: gave up after %d conflicting writes", namespace, name, attempts)


def _what(changes: assignment.StreamChanges) -> str:
    parts = []
    if changes.labels:
        parts.append("partition label")
    if changes.status:
        parts.append("status " + ",".join(sorted(changes.status)))
    return " and ".join(parts)
