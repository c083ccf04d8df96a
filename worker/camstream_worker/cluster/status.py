"""CameraStream status written by the serving worker, only when it changes.

Who calls this: agent.py, for the streams of the partitions this worker
serves (never for those it is only taking over, so the worker field does not
flap during a handoff). The patch is a JSON merge patch of the changed fields
guarded by the resourceVersion it was computed from (the conditions list is
written whole); on a conflict the stream is read again and the patch
recomputed once. An Invalid stream also gets one Warning Event, when it
becomes Invalid, never on every pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from camstream import kubeapi, kubeevents
from camstream.conditions import merge_conditions, now_rfc3339, status_patch

from .desired import Report

log = logging.getLogger("camstream.worker.cluster")
COMPONENT = "camstream-worker"


def wanted_patch(body: Mapping[str, Any], wanted: Report) -> dict[str, Any] | None:
    """The status fields to write, or None; lazy fields only join a write (or fill a gap)."""
    current = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    fields = {
        **wanted.fields,
        "conditions": merge_conditions(
            current.get("conditions"), wanted.conditions, now=now_rfc3339(), generation=generation
        ),
    }
    patch = status_patch(current, fields)
    lazy = status_patch(current, wanted.lazy)
    if lazy and (patch or any(current.get(k) is None for k in lazy)):
        patch = {**(patch or {}), **lazy}
    return patch


async def report(
    api: kubeapi.KubeApi, body: Mapping[str, Any], wanted: Report
) -> dict[str, Any] | None:
    """Write what differs; return the updated object, or None if nothing was written."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    path = kubeapi.stream_path(namespace, name, status=True)
    current: Mapping[str, Any] = body
    for _ in range(2):
        patch = wanted_patch(current, wanted)
        if patch is None:
            return None
        version = (current.get("metadata") or {}).get("resourceVersion")
        try:
            updated = await api.patch(
                path, {"metadata": {"resourceVersion": version}, "status": patch}
            )
        except kubeapi.NotFound:
            return None
        except kubeapi.Conflict:
            current = await api.get(kubeapi.stream_path(namespace, name))
            continue
        notice = wanted.notice
        if notice is not None and "phase" in patch:
            await kubeevents.post(
                api,
                updated,
                type_=notice.type,
                reason=notice.reason,
                message=notice.message,
                component=COMPONENT,
            )
        return updated
    log.info("[%s/%s] status changed under us twice; next change retries", namespace, name)
    return None
