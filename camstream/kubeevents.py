"""Kubernetes Events for important transitions (ring changes, an invalid stream).

Who calls this: the operator's reconciler, per ring change and summarised
(one Event per kind and pair of workers, never one per partition or stream),
and the worker, once when it marks a stream it serves Invalid. Messages are
built by the callers from names and partition numbers only, never from
secrets; posting failures are logged and swallowed, because an Event is a
courtesy, not part of the protocol.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from camstream import kubeapi
from camstream.conditions import now_rfc3339

log = logging.getLogger("camstream.events")


async def post(
    api: kubeapi.KubeApi,
    involved: Mapping[str, Any],
    *,
    type_: str,
    reason: str,
    message: str,
    component: str = "camstream-operator",
) -> None:
    meta = involved.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    stamp = now_rfc3339()
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'camstream')}.{time.time_ns():x}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", ""),
            "kind": involved.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": namespace,
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message[:1000],
        "type": type_,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": component, "host": os.environ.get("POD_NAME", "")},
        "reportingComponent": component,
        "reportingInstance": os.environ.get("POD_NAME", component),
    }
    try:
        await api.create(kubeapi.event_path(namespace), body)
    except kubeapi.KubeError as exc:
        log.warning(
            "could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc
        )
