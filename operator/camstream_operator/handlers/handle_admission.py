"""Admission of a new CameraStream: its partition labels, in the create request itself.

Who calls this: main.py's kopf mutating webhook, on every CameraStream
create, on both operator replicas (the answer depends only on the stream's
name and the ring's size, so neither needs to lead). Labelling here costs
the API server no write of its own; at 100k streams the one write a stream
can afford is its create.

When this replica does not know the ring's size yet (just started), or the
name is still to be generated, the stream is admitted as it is: the
fallback labeller (labeller.py) labels it a moment later. The webhook's
failure policy is Ignore for the same reason: a create never waits for, or
fails because of, the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camstream import partition_labels


def labels_to_add(body: Mapping[str, Any], *, ring_size: int | None) -> dict[str, str]:
    """The partition labels a created stream lacks ({} when it has them or we cannot tell)."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if ring_size is None or not namespace or not name:
        return {}
    return partition_labels.missing(meta.get("labels"), str(namespace), str(name), ring_size)
