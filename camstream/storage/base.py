"""The interface every object store backend implements (s3.py, folder.py).

Who calls this: see the package docstring. Keys are '/'-separated, without a
leading '/'; a backend may put them under a prefix of its own. Objects are
written whole and never changed (recordings are append-only: a new group is
a new object), so readers may cache what they read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> None:
        """Write one whole object (one request)."""
        ...

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes start..end-1 of an object."""
        ...

    def objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    async def folders(self, prefix: str) -> list[str]:
        """The next level of 'folders' under `prefix` (which ends with '/'), as full prefixes."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete these objects (missing ones are not an error)."""
        ...

    async def close(self) -> None: ...
