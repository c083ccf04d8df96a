"""kopf settings for the operator, applied at startup.

Who calls this: main.py's @kopf.on.startup. kopf serves the admission
webhook and nothing else: leadership is our Lease (leader.py), so kopf's
peering and its cluster-wide scanning of CRDs and namespaces (which the
chart's RBAC does not grant) are off, and its own progress storage and
event posting are never used. The webhook configuration is the chart's
(a MutatingWebhookConfiguration with the CA of the mounted certificate),
not kopf's: two replicas managing it themselves would fight over its CA.
"""

from __future__ import annotations

import logging
from typing import Any

Logger = logging.Logger | logging.LoggerAdapter[Any]


async def configure(*, settings: Any, webhook: Any | None, logger: Logger) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.enabled = False  # our Events go through events.py, summarised
    settings.networking.request_timeout = 30
    settings.admission.managed = None
    settings.admission.server = webhook
    logger.debug("kopf configured: standalone, no scanning, webhook %s", "on" if webhook else "off")
