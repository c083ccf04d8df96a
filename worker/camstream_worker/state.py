"""What a worker knows about its streams, as plain values.

Who calls this: the supervisor writes `StreamStatus` snapshots as a stream moves
through its states; the HTTP server, the metrics exporter and the status
reporter (cluster mode) only read them through `StreamDirectory`.

The stream state machine (declared here, driven by supervisor.py):

    Pending ──start──▶ Connecting ──first segment──▶ Live
                          ▲   │                        │
                          │   └──error/stall──┐        │ error/stall
                          │                   ▼        ▼
                          └──backoff done── Reconnecting
    any ──permanent error (bad key, unsupported codec, bad spec)──▶ Failed
    any ──stop (deleted, paused, handed off)──▶ Stopped

Reconnecting keeps the stream's HLS media sequence; the next segment carries
EXT-X-DISCONTINUITY. Failed waits for a spec change (or a long backoff for
errors that may heal, like a wrong password being fixed in the Secret).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from camstream.spec import StreamKey


class Phase(enum.StrEnum):
    PENDING = "Pending"
    CONNECTING = "Connecting"
    LIVE = "Live"
    RECONNECTING = "Reconnecting"
    FAILED = "Failed"
    STOPPED = "Stopped"


def stream_dir(key: StreamKey) -> PurePosixPath:
    """Where a stream's HLS files live, relative to the worker's HLS root.

    The same two names as in its URLs (camstream.wire.stream_path), so a
    validated URL maps to a file without a lookup.
    """
    return PurePosixPath(key.namespace) / key.name


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One stream as the worker sees it right now. Contains no secrets."""

    key: StreamKey
    protocol: str
    phase: Phase
    reason: str = ""
    message: str = ""
    since: float = 0.0  # wall-clock time of the last phase change
    reconnects: int = 0
    bytes_in: int = 0
    segments: int = 0
    last_segment_at: float | None = None  # wall-clock time the newest segment was written
    media_sequence: int = 0
    # Fixed at the writer's first segment: see sequence.lead_of.
    sequence_lead: int | None = None
    discontinuity_sequence: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    renditions: tuple[str, ...] = ()
    thumbnail: bool = False


class StreamDirectory(Protocol):
    """Read side of a worker's streams, for HTTP, metrics and status reports."""

    def statuses(self) -> list[StreamStatus]: ...

    def status(self, key: StreamKey) -> StreamStatus | None: ...


class OwnerLocator(Protocol):
    """Cluster mode: which worker serves a stream (None = this one or unknown)."""

    def owner_url(self, key: StreamKey) -> str | None: ...
