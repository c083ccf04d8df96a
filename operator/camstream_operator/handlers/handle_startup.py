"""kopf settings for the operator, applied at startup.

Who calls this: main.py's @kopf.on.startup. kopf is used only as the
CameraStream watcher; leadership is our Lease (leader.py), so kopf's peering and
its cluster-wide scanning of CRDs and namespaces (which the chart's RBAC does
not grant) are off, and its own progress storage is never used (event
handlers only).
"""

from __future__ import annotations

import logging
from typing import Any

Logger = logging.Logger | logging.LoggerAdapter[Any]


async def configure(*, settings: Any, logger: Logger) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.enabled = False  # our Events go through events.py, summarised
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 300
    settings.networking.request_timeout = 30
    logger.debug("kopf configured: standalone, no scanning, no posting")
