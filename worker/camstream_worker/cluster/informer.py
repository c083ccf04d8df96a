"""A list+watch cache of one kind of object, with a change callback.

Who calls this: agent.py keeps two: the ring ConfigMap (field selector on its
name) and the CameraStreams of this worker's partitions (label selector
`camstream.io/partition in (...)`, replaced when the partitions change). At
100k streams a worker must only ever see its own share; the label selector is
what makes that so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from camstream import kubeapi

log = logging.getLogger("camstream.worker.cluster")

Key = tuple[str, str]


class Informer:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        path: str,
        *,
        on_change: Callable[[], None],
        label_selector: str | None = None,
        field_selector: str | None = None,
        name: str = "informer",
        still_ours: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self._api = api
        self._path = path
        self._on_change = on_change
        self.label_selector = label_selector
        self._field_selector = field_selector
        self.name = name
        # Asked when the watch says an object is gone (the event carries the
        # object as it was): returns the object to keep instead, e.g. one that
        # only changed its labels in a way our selector does not follow yet.
        self._still_ours = still_ours
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.listed_selector: str | None = None  # the selector the items were listed with

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                listed = await self._api.list(
                    self._path,
                    label_selector=self.label_selector,
                    field_selector=self._field_selector,
                )
                self.items = {_key(o): o for o in listed.get("items", [])}
                self.listed_selector = self.label_selector
                self.synced.set()
                self._on_change()
                version = listed["metadata"]["resourceVersion"]
                attempt = 0
                while True:  # each watch ends at the server's timeout; resume from version
                    async for kind, obj in self._api.watch(
                        self._path,
                        resource_version=version,
                        label_selector=self.label_selector,
                        field_selector=self._field_selector,
                    ):
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if kind == "BOOKMARK":
                            continue
                        if kind == "DELETED":
                            kept = await self._still_ours(obj) if self._still_ours else None
                            if kept is None:
                                self.items.pop(_key(obj), None)
                            else:
                                self.items[_key(obj)] = kept
                        else:
                            self.items[_key(obj)] = obj
                        self._on_change()
            except kubeapi.Gone:
                continue  # too old: list again
            except kubeapi.KubeError as exc:
                attempt += 1
                log.warning("%s: %s (attempt %d)", self.name, exc, attempt)
                await kubeapi.sleep_backoff(attempt)


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))
