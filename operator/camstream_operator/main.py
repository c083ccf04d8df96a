"""kopf entry points: each is a docstring and one call into handlers/.

Who calls this: cli.py registers them on the registry it runs kopf with.
kopf serves the operator's admission webhook; the operator's own loops
(leader election, the ring, the fallback labeller) are started by cli.py
and watch with label selectors kopf does not offer, so that no per-stream
state is kept here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from camstream.wire import API_GROUP, API_VERSION, PLURAL

from .handlers import handle_admission, handle_startup

Logger = logging.Logger | logging.LoggerAdapter[Any]
WEBHOOK_ID = "partition-labels"  # also the webhook's URL path: /partition-labels


def register(
    registry: kopf.OperatorRegistry,
    *,
    webhook: Any | None,
    ring_size: Callable[[], int | None],
    stepping_down: Callable[[], Awaitable[None]],
) -> None:
    """Put the handlers on `registry`; the mutating webhook only when it is served."""

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        """Stopping (SIGTERM): let the other replica lead now, not after kopf's own shutdown."""
        await stepping_down()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """kopf's own client: credentials read by the `kubernetes` library, as ours are."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(*, settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
        """Standalone kopf: no peering, no scanning; the webhook server when configured."""
        await handle_startup.configure(settings=settings, webhook=webhook, logger=logger)

    if webhook is None:
        return

    @kopf.on.mutate(
        API_GROUP,
        API_VERSION,
        PLURAL,
        id=WEBHOOK_ID,
        operations=["CREATE"],
        ignore_failures=True,
        registry=registry,
    )
    def label_partitions(*, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        """A CameraStream is being created: add its partition labels to the request."""
        labels = handle_admission.labels_to_add(body, ring_size=ring_size())
        if labels:
            patch.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
