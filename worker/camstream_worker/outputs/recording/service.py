"""Recording on a worker, set up once: the store, the spool, the uploader, the defaults.

Who calls this: the entry points (standalone `camstream run`/`demo`, the
cluster worker). `start` reads the environment (camstream.storage.config and
CAMSTREAM_RECORDING_*), opens the store and starts the uploader; the engine
gets `spool` and `defaults`; the HTTP app gets `store` for playback; `close`
drains the uploader (until a deadline) and closes the store.

    CAMSTREAM_RECORDING_SPOOL_BYTES   bound of the spool on the worker's volume
                                      (default 2 GiB)
    CAMSTREAM_RECORDING_DEFAULTS      JSON {"default": {...}, "namespaces": {"ns": {...}}},
                                      each shaped like spec.recording: what
                                      streams without spec.recording get

Losses (the spool full while the store is away) are reported per stream and
summarised: `LossReports` lets one report through per stream per
LOSS_REPORT_SECONDS, carrying everything lost since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camstream import settings
from camstream.spec import RecordingDefaults, SpecError, StreamKey, parse_recording_defaults
from camstream.storage import config as store_config
from camstream.storage.base import ObjectStore
from camstream_worker.outputs.recording.uploader import DEFAULT_SPOOL_BYTES, Loss, Uploader

log = logging.getLogger(__name__)

SPOOL_FOLDER = ".recording-spool"  # under the HLS root: never a namespace, never served
LOSS_REPORT_SECONDS = 600.0


def spool_root(hls_root: Path) -> Path:
    return hls_root / SPOOL_FOLDER


def defaults_from_env(environ: Mapping[str, str] | None = None) -> RecordingDefaults:
    env = os.environ if environ is None else environ
    text = env.get("CAMSTREAM_RECORDING_DEFAULTS")
    if not text:
        return RecordingDefaults()
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return parse_recording_defaults(raw, "CAMSTREAM_RECORDING_DEFAULTS")
    except (ValueError, SpecError) as exc:
        raise settings.SettingError("CAMSTREAM_RECORDING_DEFAULTS", "(JSON)", str(exc)) from None


class LossReports:
    """At most one report per stream per `every` seconds, adding up what was lost between."""

    def __init__(
        self,
        post: Callable[[Loss], Coroutine[Any, Any, None]],
        every: float = LOSS_REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._every = every
        self._clock = clock
        self._last: dict[StreamKey, float] = {}
        self._pending: dict[StreamKey, Loss] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, loss: Loss) -> None:
        held = self._pending.pop(loss.key, None)
        if held is not None:
            loss = Loss(
                loss.key,
                loss.groups + held.groups,
                loss.bytes + held.bytes,
                loss.seconds + held.seconds,
            )
        now = self._clock()
        last = self._last.get(loss.key)
        if last is not None and now - last < self._every:
            self._pending[loss.key] = loss  # goes with the next report of this stream
            return
        self._last[loss.key] = now
        task = asyncio.get_running_loop().create_task(self._post(loss))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass
class Recording:
    spool: Path
    defaults: RecordingDefaults
    store: ObjectStore | None
    uploader: Uploader | None
    task: asyncio.Task[None] | None

    @property
    def engine_spool(self) -> Path | None:
        """Where recorders write; None when there is no store to upload to."""
        return self.spool if self.store is not None else None

    async def close(self, deadline: float | None = None) -> None:
        """Upload what is ready until `deadline` (monotonic), then stop and close the store."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.uploader is not None and deadline is not None:
            with contextlib.suppress(Exception):
                await self.uploader.drain(deadline)
        if self.store is not None:
            await self.store.close()


async def start(
    hls_root: Path,
    *,
    default_folder: Path | None,
    on_loss: Callable[[Loss], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Recording:
    """`default_folder`: standalone mode records to a folder unless told otherwise."""
    config = store_config.from_env(environ, default_folder=default_folder)
    defaults = defaults_from_env(environ)
    spool = spool_root(hls_root)
    store = await store_config.open_store(config)
    if store is None:
        return Recording(spool, defaults, None, None, None)
    max_bytes = settings.from_env(
        "CAMSTREAM_RECORDING_SPOOL_BYTES", settings.count, DEFAULT_SPOOL_BYTES, environ=environ
    )
    uploader = Uploader(spool, store, max_spool_bytes=max_bytes, on_loss=on_loss)
    task = asyncio.create_task(uploader.run(), name="recording-uploader")
    log.info("recording to %s (spool %s, at most %d bytes)", config.kind, spool, max_bytes)
    return Recording(spool, defaults, store, uploader, task)
