"""kopf entry points: each is a docstring and one await into handlers/.

Who calls this: kopf, which cli.py runs with this module's registry. The
operator's real loops (leader election, ring planning) are started by cli.py;
kopf only watches CameraStreams for us.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from camstream.wire import API_GROUP, API_VERSION, PLURAL

from .handlers import handle_camerastream, handle_startup

Logger = logging.Logger | logging.LoggerAdapter[Any]


@kopf.on.startup()
async def startup(*, settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
    """Standalone kopf: no peering, no scanning; our Lease decides who acts."""
    await handle_startup.configure(settings=settings, logger=logger)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def camerastream_event(
    *, type: str, body: kopf.Body, memo: Any, logger: Logger, **_: Any
) -> None:
    """A CameraStream was listed, added, changed or deleted: label and assign it."""
    await handle_camerastream.handle_event(
        event_type=type, body=body, runtime=memo.runtime, logger=logger
    )
