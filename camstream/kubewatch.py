"""A list+watch cache of one kind of object, as Kubernetes controllers keep (an informer).

Who calls this: the operator (worker pods, heartbeat Leases, the ring
ConfigMap, CameraStreams that still lack their partition labels) and the
worker's cluster agent (the ring ConfigMap and the CameraStreams of its own
partitions). Both components may import it: it sits in the shared package
beside kubeapi, the one door to the API.

What it does the way client-go's reflector does, because at 100k objects
the naive way breaks:

- the first LIST is paged (`page_size` items per request) and the event loop
  gets control back between pages;
- the watch resumes from the last resourceVersion it saw, bookmarks
  included, so a watch that ends at the server's timeout costs no re-list;
  only 410 Gone (history compacted) makes it list again;
- failures back off (0.5 s doubling to `max_backoff`, 10 s by default) and
  are logged once per attempt; `retry_now` cuts a backoff short;
- `keep` turns each object into what the caller needs (a few fields, not the
  whole body), so memory follows the caller's needs, not the object size.

`healthy_since` is the monotonic time since which the watch has run without a
break (None while broken): callers that judge others by what they have *seen*
(heartbeat Leases) must not count time they could not see.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from camstream import kubeapi, retry

log = logging.getLogger("camstream.kubewatch")

# After a failed list or watch: 0.5, 1, 2, 4, 8, then every 10 seconds
# (`max_backoff` replaces the cap).
RELIST_RETRY = retry.Backoff(initial=0.5, cap=10.0, jitter=0.0)

Key = tuple[str, str]  # (namespace, name)
T = TypeVar("T")


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _whole(obj: dict[str, Any]) -> Any:
    return obj


class Informer(Generic[T]):
    """Keeps `items` equal to the objects at `path` that match the selectors."""

    def __init__(
        self,
        api: kubeapi.KubeApi,
        path: str,
        *,
        name: str,
        keep: Callable[[dict[str, Any]], T] = _whole,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[Key, T | None, T | None], None] | None = None,
        on_sync: Callable[[], None] | None = None,
        page_size: int = 500,
        metadata_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_backoff: float = 10.0,
    ) -> None:
        self._api = api
        self._path = path
        self.name = name
        self._keep = keep
        self.label_selector = label_selector
        self._field_selector = field_selector
        self._on_change = on_change
        self._on_sync = on_sync
        self._page_size = page_size
        self._metadata_only = metadata_only
        self._clock = clock
        self.items: dict[Key, T] = {}
        self.synced = asyncio.Event()  # set once the first full list is in
        self.healthy_since: float | None = None
        self.lists = 0  # full (re)lists done, for tests and metrics
        self._backoff = dataclasses.replace(RELIST_RETRY, cap=max_backoff)
        self._retry = asyncio.Event()

    async def run(self) -> None:
        """List, then watch for ever; cancel the task to stop."""
        attempt = 0
        while True:
            try:
                version = await self._relist()
                attempt = 0
                await self._watch(version)
            except kubeapi.Gone:
                log.info("%s: watch history expired; listing again", self.name)
                self.healthy_since = None
            except kubeapi.KubeError as exc:
                self.healthy_since = None
                attempt += 1
                log.warning("%s: %s (attempt %d)", self.name, exc, attempt)
                self._retry.clear()
                try:
                    await asyncio.wait_for(self._retry.wait(), timeout=self._backoff.delay(attempt))
                except TimeoutError:
                    pass

    def retry_now(self) -> None:
        """Cut a backoff short (the caller knows the API server answers again)."""
        self._retry.set()

    async def _relist(self) -> str:
        fresh: dict[Key, T] = {}
        version = ""
        async for page, listed_version in self._api.list_all(
            self._path,
            label_selector=self.label_selector,
            field_selector=self._field_selector,
            page_size=self._page_size,
            metadata_only=self._metadata_only,
        ):
            version = listed_version
            for obj in page:
                fresh[key_of(obj)] = self._keep(obj)
            await asyncio.sleep(0)  # let the loop breathe between pages
        old, self.items = self.items, fresh
        self.lists += 1
        self.healthy_since = self._clock()
        if self._on_change is not None:
            for key in old.keys() - fresh.keys():
                self._on_change(key, old[key], None)
            for key, item in fresh.items():
                if old.get(key) != item:
                    self._on_change(key, old.get(key), item)
        self.synced.set()
        if self._on_sync is not None:
            self._on_sync()
        return version

    async def _watch(self, version: str) -> None:
        while True:  # each watch ends at the server's timeout; resume where it left
            async for kind, obj in self._api.watch(
                self._path,
                resource_version=version,
                label_selector=self.label_selector,
                field_selector=self._field_selector,
                metadata_only=self._metadata_only,
            ):
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                self._apply(kind, obj)
            if self.healthy_since is None:
                self.healthy_since = self._clock()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        old = self.items.get(key)
        if kind == "DELETED":
            if key not in self.items:
                return
            del self.items[key]
            new: T | None = None
        else:
            new = self._keep(obj)
            self.items[key] = new
        if self._on_change is not None:
            self._on_change(key, old, new)
