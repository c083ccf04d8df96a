"""The worker's recording spool: groups on the worker's own volume until they are uploaded.

Who calls this: the recorder (writes), the uploader (reads, uploads, deletes,
recovers what a killed process left). Layout, one folder per stream:

    <spool>/<ns>/<name>/retention.json                  the stream's retention
    <spool>/<ns>/<name>/<start>-<writer>.open           an open group's data
    <spool>/<ns>/<name>/<start>-<writer>.journal        its index so far, a line per segment
    <spool>/<ns>/<name>/<start>-<duration>-<writer>.ts  a closed group: the object to upload

A segment is appended to the data file before its journal line, so after a
SIGKILL the journal never names bytes that are not there: `close_abandoned`
cuts the data after the last journalled segment, appends the trailer and
renames, and the group is uploaded like any other. What a SIGKILL loses is
only the segment being cut at that moment.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from camstream.recording import groupfile, layout
from camstream.recording.groupfile import Entry, GroupIndex
from camstream.spec import StreamKey

OPEN = ".open"
JOURNAL = ".journal"


@dataclass(frozen=True, slots=True)
class Ready:
    """A closed group waiting in the spool."""

    path: Path
    group: layout.GroupName
    size: int


def stream_folder(root: Path, key: StreamKey) -> Path:
    return root / key.namespace / key.name


def ready_groups(root: Path) -> list[Ready]:
    """Every closed group in the spool, oldest first."""
    found: list[Ready] = []
    for folder, key in _stream_folders(root):
        for entry in _scandir(folder):
            group = layout.parse_object_name(key, entry.name)
            if group is not None:
                with contextlib.suppress(FileNotFoundError):
                    found.append(Ready(Path(entry.path), group, entry.stat().st_size))
    return sorted(found, key=lambda r: (r.group.start_ms, str(r.group.key), r.group.writer))


def spool_bytes(root: Path) -> int:
    total = 0
    for folder, _ in _stream_folders(root):
        for entry in _scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


def open_groups(root: Path) -> list[tuple[Path, float]]:
    """(data file, modification time) of every open group."""
    found = []
    for folder, _ in _stream_folders(root):
        for entry in _scandir(folder):
            if entry.name.endswith(OPEN):
                with contextlib.suppress(FileNotFoundError):
                    found.append((Path(entry.path), entry.stat().st_mtime))
    return found


def retention_files(root: Path) -> list[tuple[StreamKey, Path]]:
    return [
        (key, folder / layout.RETENTION_OBJECT)
        for folder, key in _stream_folders(root)
        if (folder / layout.RETENTION_OBJECT).is_file()
    ]


def journal_line(entry: Entry) -> bytes:
    return json.dumps(entry.as_row(), separators=(",", ":")).encode() + b"\n"


def close_group(data_path: Path, key: StreamKey, writer: str, entries: list[Entry]) -> Path | None:
    """Append the trailer and give the group its final name; None if it holds nothing."""
    journal = data_path.with_suffix(JOURNAL)
    if not entries:
        data_path.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        return None
    index = GroupIndex(str(key), writer, tuple(entries))
    with open(data_path, "r+b") as handle:
        handle.truncate(index.data_size)  # a segment cut short by a kill goes
        handle.seek(index.data_size)
        handle.write(groupfile.trailer(index))
    name = layout.object_name(index.start_ms, index.duration_ms, writer)
    final = data_path.with_name(name)
    os.replace(data_path, final)
    journal.unlink(missing_ok=True)
    return final


def close_abandoned(data_path: Path) -> Path | None:
    """Close an open group left by a process that died, from its journal."""
    folder = data_path.parent
    key = StreamKey(folder.parent.name, folder.name)
    _, _, writer = data_path.stem.partition("-")
    entries: list[Entry] = []
    try:
        lines = data_path.with_suffix(JOURNAL).read_bytes().split(b"\n")
    except FileNotFoundError:
        lines = []
    size = data_path.stat().st_size
    for line in lines:
        try:
            entry = Entry.from_row(json.loads(line))
        except ValueError:
            break  # the line being written when the process died
        if entry.offset + entry.size > size:
            break
        entries.append(entry)
    return close_group(data_path, key, writer, entries)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _stream_folders(root: Path) -> list[tuple[Path, StreamKey]]:
    out = []
    for ns in _scandir(root):
        if ns.is_dir() and not ns.name.startswith("."):
            for name in _scandir(Path(ns.path)):
                if name.is_dir() and not name.name.startswith("."):
                    out.append((Path(name.path), StreamKey(ns.name, name.name)))
    return out


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []
