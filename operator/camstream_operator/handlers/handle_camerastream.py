"""Every CameraStream watch event: index it, and (when leading) bring it in line.

Who calls this: main.py's kopf event handler. kopf event handlers keep no
state on the resource (no finalizers, no progress annotations), which is what
lets two replicas watch the same objects while only the leader writes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from camstream import kubeapi

from ..runtime import Runtime

Logger = logging.Logger | logging.LoggerAdapter[Any]


async def handle_event(
    *, event_type: str | None, body: Mapping[str, Any], runtime: Runtime, logger: Logger
) -> None:
    deleted = event_type == "DELETED"
    runtime.remember(copy.deepcopy(dict(body)), deleted=deleted)
    if deleted:
        return
    try:
        await runtime.sync(body)
    except kubeapi.KubeError as exc:
        # The next event or the next leadership resync retries; nothing is lost.
        logger.warning("could not update the stream: %s", exc)
