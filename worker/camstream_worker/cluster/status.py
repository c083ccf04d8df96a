"""CameraStream status written by the serving worker, only when it changes.

Who calls this: agent.py, for the streams of the partitions this worker
serves (never for those it is only taking over, so the worker field does not
flap during a handoff). The patch is a JSON merge patch of the changed fields
guarded by the resourceVersion it was computed from (the conditions list is
written whole, merged with the operator's conditions); on a conflict the
stream is read again and the patch recomputed once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from camstream import kubeapi
from camstream.conditions import merge_conditions, now_rfc3339, status_patch

log = logging.getLogger("camstream.worker.cluster")


def wanted_patch(
    body: Mapping[str, Any], fields: Mapping[str, Any], conds: list[dict[str, Any]]
) -> dict[str, Any] | None:
    current = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    wanted = {
        **fields,
        "conditions": merge_conditions(
            current.get("conditions"), conds, now=now_rfc3339(), generation=generation
        ),
    }
    return status_patch(current, wanted)


async def report(
    api: kubeapi.KubeApi,
    body: Mapping[str, Any],
    fields: Mapping[str, Any],
    conds: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """Write what differs; return the updated object, or None if nothing was written."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    path = kubeapi.stream_path(namespace, name, status=True)
    current: Mapping[str, Any] = body
    for _ in range(2):
        patch = wanted_patch(current, fields, conds)
        if patch is None:
            return None
        version = (current.get("metadata") or {}).get("resourceVersion")
        try:
            return await api.patch(
                path, {"metadata": {"resourceVersion": version}, "status": patch}
            )
        except kubeapi.NotFound:
            return None
        except kubeapi.Conflict:
            current = await api.get(kubeapi.stream_path(namespace, name))
    log.info("[%s/%s] status changed under us twice; next change retries", namespace, name)
    return None
