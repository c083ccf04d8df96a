"""One recorded group: the live segments' own bytes back to back, then their index.

Who calls this: the worker's recorder appends segments to a spool file and
finishes it with `trailer(...)`; readers (playback, clips) fetch the last
bytes of an object, find the index with `footer_length`/`parse_trailer`, and
then byte ranges of the segments. Pure.

    ┌──────────────┬──────────────┬─────┬────────────────────┬────────────────────────┐
    │ segment 0    │ segment 1    │ ... │ index (JSON, UTF-8)│ footer (16 bytes)      │
    │ (MPEG-TS,    │              │     │                    │ "CSRG" version flags   │
    │  as written) │              │     │                    │ index length, CRC-32   │
    └──────────────┴──────────────┴─────┴────────────────────┴────────────────────────┘

The index goes in the same object (one PUT per group, never a second one for
the index), after the data, so a writer appends as segments come and never
rewrites. A player given byte ranges never reads it; ffprobe reading the
whole object stops at the first bytes that are not MPEG-TS packets.

Index entries hold each segment's offset and size in the object, its
duration and program date-time in milliseconds (wall clock of its first
frame), the live playlist's media sequence number, and whether a
discontinuity (a new source session: timestamps or codec parameters may
change) comes before it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from camstream.recording import RecordingFormatError

MAGIC = b"CSRG"
VERSION = 1
FOOTER = struct.Struct(">4sHHII")  # magic, version, flags, index length, CRC-32 of the index
FOOTER_SIZE = FOOTER.size  # 16
MAX_INDEX = 4 << 20  # an index of a 10-minute group of 1-second segments is ~30 KiB
# What a reader fetches first: the footer and, nearly always, the whole index.
TAIL_GUESS = 64 << 10


@dataclass(frozen=True, slots=True)
class Entry:
    """One segment in a group object."""

    offset: int
    size: int
    duration_ms: int
    start_ms: int  # program date-time of its first frame, ms since the epoch
    sequence: int  # its media sequence number in the live playlist
    discontinuity: bool = False

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    def as_row(self) -> list[int]:
        return [
            self.offset,
            self.size,
            self.duration_ms,
            self.start_ms,
            self.sequence,
            int(self.discontinuity),
        ]

    @staticmethod
    def from_row(row: Any) -> Entry:
        if not isinstance(row, list) or len(row) != 6 or not all(isinstance(v, int) for v in row):
            raise RecordingFormatError("bad index entry")
        offset, size, duration, start, sequence, discontinuity = row
        if offset < 0 or size <= 0 or duration < 0:
            raise RecordingFormatError("bad index entry")
        return Entry(offset, size, duration, start, sequence, bool(discontinuity))


@dataclass(frozen=True, slots=True)
class GroupIndex:
    stream: str  # "<namespace>/<name>"
    writer: str
    entries: tuple[Entry, ...]

    @property
    def start_ms(self) -> int:
        return self.entries[0].start_ms if self.entries else 0

    @property
    def duration_ms(self) -> int:
        """From the first segment's start to the last one's end, by program date-time."""
        if not self.entries:
            return 0
        return max(e.end_ms for e in self.entries) - self.start_ms

    @property
    def data_size(self) -> int:
        return max((e.offset + e.size for e in self.entries), default=0)


def trailer(index: GroupIndex) -> bytes:
    """The bytes that follow the segments: the index and the footer."""
    body = json.dumps(
        {
            "v": VERSION,
            "stream": index.stream,
            "writer": index.writer,
            "segments": [e.as_row() for e in index.entries],
        },
        separators=(",", ":"),
    ).encode()
    return body + FOOTER.pack(MAGIC, VERSION, 0, len(body), zlib.crc32(body))


def footer_length(tail: bytes) -> int:
    """From at least the last 16 bytes of an object: how many bytes the trailer takes."""
    if len(tail) < FOOTER_SIZE:
        raise RecordingFormatError("object too short for a recording footer")
    magic, version, flags, length, _ = FOOTER.unpack(tail[-FOOTER_SIZE:])
    if magic != MAGIC:
        raise RecordingFormatError("not a camstream recording (no footer)")
    if version != VERSION or flags != 0:  # no flags are defined in version 1
        raise RecordingFormatError(f"recording format version {version} not understood")
    if length > MAX_INDEX:
        raise RecordingFormatError("recording index too large")
    return length + FOOTER_SIZE


def parse_trailer(tail: bytes, object_size: int) -> GroupIndex:
    """The index, from the object's last bytes (at least `footer_length` of them)."""
    needed = footer_length(tail)
    if len(tail) < needed or needed > object_size:
        raise RecordingFormatError("recording trailer cut short")
    _, _, _, _, crc = FOOTER.unpack(tail[-FOOTER_SIZE:])
    body = tail[-needed:-FOOTER_SIZE]
    if zlib.crc32(body) != crc:
        raise RecordingFormatError("recording index damaged (CRC mismatch)")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise RecordingFormatError("recording index is not JSON") from exc
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        raise RecordingFormatError("recording index of an unknown shape")
    entries = tuple(Entry.from_row(row) for row in raw.get("segments") or [])
    data_end = object_size - needed
    if any(e.offset + e.size > data_end for e in entries):
        raise RecordingFormatError("recording index points past its data")
    return GroupIndex(str(raw.get("stream", "")), str(raw.get("writer", "")), entries)


def pack(stream: str, writer: str, segments: Sequence[tuple[bytes, Entry]]) -> bytes:
    """A whole group object from segments and their (offset-less) entries: for tests and tools."""
    data = bytearray()
    entries = []
    for payload, entry in segments:
        entries.append(
            Entry(
                len(data),
                len(payload),
                entry.duration_ms,
                entry.start_ms,
                entry.sequence,
                entry.discontinuity,
            )
        )
        data += payload
    return bytes(data) + trailer(GroupIndex(stream, writer, tuple(entries)))
