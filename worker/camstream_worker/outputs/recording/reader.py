"""Reading a stream's recordings back from the object store, on any worker.

Who calls this: the HTTP recordings routes (servers/http/recordings.py) and
the clip maker. The store is shared, so any worker answers for any stream;
the store's credentials stay in the worker (a viewer only ever sees the
worker's URLs).

Costs per request: one LIST per hour folder the range touches (the keys
alone give the recorded ranges), then, for playlists and clips, one ranged
GET per group for its index. Objects never change, so indexes are cached
(LRU, INDEX_CACHE of them).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from camstream.recording import RecordingFormatError, groupfile, layout, timeline
from camstream.recording.groupfile import GroupIndex
from camstream.spec import StreamKey
from camstream.storage.base import ObjectStore

INDEX_CACHE = 4096  # indexes of ~30 entries: a few MB
# Groups may start up to this long before the range they overlap.
MAX_GROUP_MS = 600_000
PARALLEL_GETS = 16


@dataclass(frozen=True, slots=True)
class StoredGroup:
    name: layout.GroupName
    size: int


class RecordingReader:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._indexes: OrderedDict[str, GroupIndex] = OrderedDict()

    async def groups(self, key: StreamKey, start_ms: int, end_ms: int) -> list[StoredGroup]:
        """Groups overlapping [start_ms, end_ms), oldest first, from listings only."""
        found: list[StoredGroup] = []
        prefix = layout.stream_prefix(key)
        for hour in layout.hours_between(start_ms - MAX_GROUP_MS, end_ms):
            async for info in self.store.objects(f"{prefix}{hour}/"):
                name = layout.parse_object_key(key, info.key)
                if name is not None and name.end_ms > start_ms and name.start_ms < end_ms:
                    found.append(StoredGroup(name, info.size))
        return sorted(found, key=lambda g: (g.name.start_ms, g.name.writer))

    async def ranges(self, key: StreamKey, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        groups = await self.groups(key, start_ms, end_ms)
        spans = timeline.ranges((g.name.start_ms, g.name.end_ms) for g in groups)
        return timeline.clip_ranges(spans, start_ms, end_ms)

    async def index(self, group: StoredGroup) -> GroupIndex:
        object_key = group.name.object_key
        cached = self._indexes.get(object_key)
        if cached is not None:
            self._indexes.move_to_end(object_key)
            return cached
        guess = min(group.size, groupfile.TAIL_GUESS)
        tail = await self.store.get_range(object_key, group.size - guess, group.size)
        needed = groupfile.footer_length(tail)
        if needed > len(tail):
            tail = await self.store.get_range(object_key, group.size - needed, group.size)
        index = groupfile.parse_trailer(tail, group.size)
        self._indexes[object_key] = index
        while len(self._indexes) > INDEX_CACHE:
            self._indexes.popitem(last=False)
        return index

    async def timeline(self, key: StreamKey, start_ms: int, end_ms: int) -> list[timeline.Chosen]:
        """The merged timeline (no duplicate, gaps as discontinuities) within the range."""
        groups = await self.groups(key, start_ms, end_ms)
        limit = asyncio.Semaphore(PARALLEL_GETS)

        async def index_of(group: StoredGroup) -> GroupIndex | None:
            async with limit:
                try:
                    return await self.index(group)
                except RecordingFormatError:
                    return None  # not ours, or damaged: left out, the rest plays

        indexes = await asyncio.gather(*(index_of(g) for g in groups))
        pieces = [
            timeline.Piece(group.name.object_key, entry, group.name.writer)
            for group, index in zip(groups, indexes, strict=True)
            if index is not None
            for entry in index.entries
        ]
        return timeline.within(timeline.merge(pieces), start_ms, end_ms)
