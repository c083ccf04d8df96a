"""The operator's live parts, bundled for kopf's memo.

Who calls this: cli.py builds one `Runtime` and passes it to kopf as the memo;
main.py's handlers hand it to the handler modules. It also keeps an index of
every CameraStream seen (kopf's watch feeds both replicas), so a replica that
becomes leader re-checks them all at once without waiting for changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from camstream import kubeapi

from . import streamsync
from .config import OperatorConfig
from .leader import LeaderElector
from .reconcile import RingReconciler

log = logging.getLogger("camstream.operator")


@dataclass
class Runtime:
    config: OperatorConfig
    api: kubeapi.KubeApi
    leader: LeaderElector
    ring: RingReconciler
    streams: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    _resync: asyncio.Task[None] | None = None
    _resync_again: bool = False

    def __post_init__(self) -> None:
        self.ring.on_resize = self._resync_all  # a grown ring relabels every stream

    def remember(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            self.streams.pop(key, None)
        else:
            self.streams[key] = body

    async def sync(self, body: Mapping[str, Any]) -> None:
        if not self.leader.is_leader:
            return
        doc = self.ring.doc
        # The ring's own size, not --partitions: they differ until a resize is
        # written, and labels must match what workers select on.
        partitions = doc.partitions if doc is not None else self.config.partitions
        await streamsync.sync_stream(self.api, body, partitions=partitions, doc=doc)

    def on_leadership(self, leading: bool) -> None:
        """Becoming leader: plan at once and re-check every known stream."""
        if not leading:
            return
        self.ring.wake()
        self._resync_all()

    def _resync_all(self) -> None:
        if self._resync is None or self._resync.done():
            self._resync = asyncio.get_running_loop().create_task(self._sync_all())
        else:
            self._resync_again = True  # what the running pass did may be out of date

    async def _sync_all(self) -> None:
        while True:
            self._resync_again = False
            for body in list(self.streams.values()):
                try:
                    await self.sync(body)
                except kubeapi.KubeError as exc:
                    log.warning("resync of a stream failed: %s", exc)
            if not self._resync_again:
                return
