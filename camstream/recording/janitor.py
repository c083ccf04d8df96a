"""One retention pass over the recordings store.

Who calls this: the operator's leader, every few minutes
(camstream_operator/janitor.py), and the tests with a clock of their own.
It needs no CameraStream: each stream's recorder leaves its retention in
`<ns>/<name>/retention.json`, so the recordings of a deleted camera still
expire as they were meant to.

Cost: per stream, one LIST of its hour folders and one GET of its retention;
then only the hours that may hold expired objects are listed (all of them
when the stream has a byte cap, which needs every size).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from camstream.recording import layout, retention
from camstream.spec import StreamKey
from camstream.storage import ObjectMissing, StorageError
from camstream.storage.base import ObjectStore

log = logging.getLogger("camstream.recording.janitor")

HOUR_MS = 3_600_000
# A group may begin up to this long before the hour folder it is listed in ends.
MAX_GROUP_MS = 600_000


@dataclass(frozen=True, slots=True)
class SweepResult:
    streams: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    without_retention: int = 0  # streams with recordings but no retention.json: left alone
    failed_streams: int = 0


def policy_json(max_age_hours: int, max_bytes: int | None) -> bytes:
    return json.dumps({"maxAgeHours": max_age_hours, "maxBytes": max_bytes}).encode()


def parse_policy(data: bytes) -> retention.Policy | None:
    try:
        raw = json.loads(data)
        hours = raw["maxAgeHours"]
        cap = raw.get("maxBytes")
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(hours, int) or hours < 1 or not (cap is None or isinstance(cap, int)):
        return None
    return retention.Policy(max_age_ms=hours * HOUR_MS, max_bytes=cap)


async def read_policy(store: ObjectStore, key: StreamKey) -> retention.Policy | None:
    name = layout.stream_prefix(key) + layout.RETENTION_OBJECT
    async for info in store.objects(name):
        if info.key == name:
            try:
                return parse_policy(await store.get_range(name, 0, info.size))
            except ObjectMissing:
                return None
    return None


async def sweep_stream(
    store: ObjectStore, key: StreamKey, *, now_ms: int
) -> tuple[int, int] | None:
    """(objects, bytes) deleted for one stream; None when it has no retention."""
    policy = await read_policy(store, key)
    if policy is None:
        return None
    cutoff = now_ms - policy.max_age_ms
    stored: list[retention.Stored] = []
    for folder in await store.folders(layout.stream_prefix(key)):
        hour = folder.rstrip("/").rsplit("/", 1)[-1]
        try:
            first = layout.hour_start_ms(hour)
        except ValueError:
            continue
        if policy.max_bytes is None and first - MAX_GROUP_MS > cutoff:
            continue  # nothing in this hour can have ended before the cutoff
        async for info in store.objects(folder):
            name = layout.parse_object_key(key, info.key)
            if name is not None:
                stored.append(
                    retention.Stored(info.key, name.start_ms, name.duration_ms, info.size)
                )
    doomed = set(retention.to_delete(stored, policy, now_ms=now_ms))
    if doomed:
        await store.delete(sorted(doomed))
    return len(doomed), sum(s.size for s in stored if s.key in doomed)


async def sweep(store: ObjectStore, *, now_ms: int) -> SweepResult:
    """Apply every stream's retention once."""
    streams = deleted = freed = orphans = failed = 0
    for namespace in await store.folders(""):
        for folder in await store.folders(namespace):
            ns, name = folder.rstrip("/").split("/")[-2:]
            key = StreamKey(ns, name)
            streams += 1
            try:
                outcome = await sweep_stream(store, key, now_ms=now_ms)
            except StorageError as exc:
                failed += 1
                log.warning("retention of %s failed: %s", key, exc)
                continue
            if outcome is None:
                orphans += 1
                continue
            deleted += outcome[0]
            freed += outcome[1]
    return SweepResult(streams, deleted, freed, orphans, failed)
