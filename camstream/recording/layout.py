"""Object keys of recordings: what a listing alone tells.

    <namespace>/<name>/<YYYYMMDDHH>/<start ms, 13 digits>-<duration ms, 7 digits>-<writer>.ts
    <namespace>/<name>/retention.json      the stream's retention, written by its recorder

The hour folder (UTC, of the group's first segment) lets a reader list only
the hours of a time range and the janitor drop whole hours; zero-padded
numbers sort in time order; the writer (worker and recorder instance) keeps
two owners recording one stream during a handoff from writing one key.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from camstream.recording import RecordingFormatError
from camstream.spec import StreamKey

RETENTION_OBJECT = "retention.json"
_WRITER_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_OBJECT_RE = re.compile(
    r"(?P<start>\d{13})-(?P<duration>\d{7})-(?P<writer>[a-z0-9][a-z0-9-]{0,62})\.ts"
)
_HOUR_RE = re.compile(r"\d{10}")
MAX_DURATION_MS = 9_999_999


@dataclass(frozen=True, slots=True)
class GroupName:
    """What a group object's key says about it."""

    key: StreamKey
    start_ms: int
    duration_ms: int
    writer: str

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    @property
    def object_name(self) -> str:
        return f"{self.start_ms:013d}-{self.duration_ms:07d}-{self.writer}.ts"

    @property
    def object_key(self) -> str:
        return f"{stream_prefix(self.key)}{hour_of(self.start_ms)}/{self.object_name}"


def stream_prefix(key: StreamKey) -> str:
    return f"{key.namespace}/{key.name}/"


def hour_of(ms: int) -> str:
    return time.strftime("%Y%m%d%H", time.gmtime(ms // 1000))


def hour_start_ms(hour: str) -> int:
    """The first millisecond of an hour folder's name."""
    if not _HOUR_RE.fullmatch(hour):
        raise RecordingFormatError("not an hour folder")
    return calendar.timegm(time.strptime(hour, "%Y%m%d%H")) * 1000


def hours_between(start_ms: int, end_ms: int) -> list[str]:
    """The hour folders a time range touches, oldest first."""
    first = start_ms - start_ms % 3_600_000
    return [hour_of(h) for h in range(first, max(end_ms, start_ms + 1), 3_600_000)]


def writer_id(text: str) -> str:
    """A writer name made safe for keys: lower-case letters, digits and '-'."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:62] or "writer"
    if not _WRITER_RE.fullmatch(cleaned):
        raise RecordingFormatError("bad writer name")
    return cleaned


def object_name(start_ms: int, duration_ms: int, writer: str) -> str:
    if not 0 <= duration_ms <= MAX_DURATION_MS:
        raise RecordingFormatError("group duration out of range")
    return GroupName(StreamKey("n", "n"), start_ms, duration_ms, writer).object_name


def parse_object_name(key: StreamKey, name: str) -> GroupName | None:
    """A group's file or object name parsed; None for anything else."""
    match = _OBJECT_RE.fullmatch(name)
    if match is None:
        return None
    return GroupName(key, int(match["start"]), int(match["duration"]), match["writer"])


def parse_object_key(key: StreamKey, object_key: str) -> GroupName | None:
    """A listed key under the stream's prefix parsed; None for anything else."""
    prefix = stream_prefix(key)
    if not object_key.startswith(prefix):
        return None
    hour, _, name = object_key[len(prefix) :].partition("/")
    group = parse_object_name(key, name)
    if group is None or not _HOUR_RE.fullmatch(hour) or hour_of(group.start_ms) != hour:
        return None
    return group
