"""A local folder as the object store: standalone mode's recordings.

Who calls this: config.open_store when CAMSTREAM_RECORDING_STORE=folder (the
default of `camstream run`). The same interface as S3 (base.py), so the
recorder, playback and retention code paths are the ones a cluster runs.
Keys map to files below the root; writes go to a hidden temporary name and
are renamed, so a reader never sees half an object. File I/O runs in a thread:
the event loop also serves HTTP.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from camstream.storage import ObjectMissing, StorageError, StoreUnavailable
from camstream.storage.base import ObjectInfo


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise StorageError("invalid object key")
        return self.root.joinpath(*parts)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        await asyncio.to_thread(_write, path, data)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        path = self._path(key)
        return await asyncio.to_thread(_read, path, start, end)

    async def objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for info in await asyncio.to_thread(self._list, prefix):
            yield info

    def _list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        # Walk only the folder the prefix lies in.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        found.append(ObjectInfo(key, path.stat().st_size))
                    except FileNotFoundError:
                        continue  # deleted meanwhile
        return sorted(found, key=lambda i: i.key)

    async def folders(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rstrip("/") if prefix else self.root
        try:
            names = await asyncio.to_thread(os.listdir, folder)
        except FileNotFoundError:
            return []
        return sorted(
            f"{prefix}{n}/" for n in names if not n.startswith(".") and (folder / n).is_dir()
        )

    async def delete(self, keys: list[str]) -> None:
        paths = [self._path(k) for k in keys]
        await asyncio.to_thread(_delete, paths, self.root)

    async def close(self) -> None:
        pass


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise StoreUnavailable(f"cannot write to the recordings folder: {exc.strerror}") from exc


def _read(path: Path, start: int, end: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, end - start))
    except FileNotFoundError as exc:
        raise ObjectMissing("no such recording") from exc
    except OSError as exc:
        raise StoreUnavailable(f"cannot read the recordings folder: {exc.strerror}") from exc
    if len(data) < end - start:
        raise ObjectMissing("range beyond the end of the recording")
    return data


def _delete(paths: list[Path], root: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        # Empty hour folders go too, up to (not including) the root.
        parent = path.parent
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
