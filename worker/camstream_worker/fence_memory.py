"""What an engine keeps of the streams it stopped, for their new owners' fences.

A stream handed away stops here before (or while) its new owner fences it;
the fence then reads what each of its writers said at the stop: the last
numbers, and the last segments' bytes (sequence.TAIL_SEGMENTS) for the new
owner to list in front of its own. The numbers are small and kept a while; the
bytes are the costly part and are bounded in all and in time, the oldest
stream's dropped first (its new owner then follows on without them).

Everything is O(1) per stream, amortised: a process handing away 10,000
streams at once must not add up every kept tail at each stop. Entries are kept
in the order they were stopped, which is also their time order, so what
expires is always at the front.

Pure: the caller passes the (monotonic) time.
"""

from __future__ import annotations

from typing import NamedTuple

from camstream.spec import StreamKey
from camstream_worker.outputs.hls.sequence import TAIL_BYTES, Fenced


class _Kept(NamedTuple):
    fenced: Fenced
    at: float  # when it stopped


class FenceMemory:
    """Stopped streams' last words, by key, within the limits given.

    `seconds`: how long a stream's numbers are kept (its new owner's fence
    comes well within that); `streams`: at most how many streams are kept
    (a whole process's, handed away at once); `tail_bytes`: at most how many
    bytes of tails in all; `tail_seconds`: how long a tail is kept.
    """

    def __init__(self, *, seconds: float, streams: int, tail_bytes: int, tail_seconds: float):
        self._seconds = seconds
        self._streams = streams
        self._tail_budget = tail_bytes
        self._tail_seconds = tail_seconds
        self._kept: dict[StreamKey, _Kept] = {}  # oldest first
        # The kept that still hold a tail, with its bytes; oldest first.
        self._tailed: dict[StreamKey, int] = {}
        self._tail_bytes = 0  # the sum of _tailed's values

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def tail_bytes(self) -> int:
        """Bytes of tails held now."""
        return self._tail_bytes

    def tail_room(self, now: float) -> int:
        """Bytes of tail a stream stopping now may keep (and so should read at
        all): a whole process's streams stopped at once read no more than the budget."""
        self._expire(now)
        return max(0, min(TAIL_BYTES, self._tail_budget - self._tail_bytes))

    def remember(self, key: StreamKey, fenced: Fenced, now: float) -> None:
        """Keep what stream `key`'s writers said at its stop, at `now` (never
        earlier than the last call's): the newest replaces an older entry."""
        self.forget(key)
        self._expire(now)
        while len(self._kept) >= self._streams:
            self.forget(next(iter(self._kept)))
        self._kept[key] = _Kept(fenced, now)
        if size := _tail_bytes(fenced):
            self._tailed[key] = size
            self._tail_bytes += size
        while self._tail_bytes > self._tail_budget:
            self._drop_tail(next(iter(self._tailed)))

    def said(self, key: StreamKey, now: float) -> Fenced | None:
        """What stream `key` said at its stop; None if it is not kept (or no longer)."""
        self._expire(now)
        kept = self._kept.get(key)
        return kept.fenced if kept is not None else None

    def forget(self, key: StreamKey) -> None:
        """Drop stream `key` (it runs here again)."""
        if self._kept.pop(key, None) is not None and (size := self._tailed.pop(key, 0)):
            self._tail_bytes -= size

    def _expire(self, now: float) -> None:
        while self._kept:
            oldest = next(iter(self._kept))
            if now - self._kept[oldest].at <= self._seconds:
                break
            self.forget(oldest)
        while self._tailed:
            oldest = next(iter(self._tailed))
            if now - self._kept[oldest].at <= self._tail_seconds:
                break
            self._drop_tail(oldest)

    def _drop_tail(self, key: StreamKey) -> None:
        self._tail_bytes -= self._tailed.pop(key)
        fenced, at = self._kept[key]
        self._kept[key] = _Kept(_without_tails(fenced), at)


def _tail_bytes(fenced: Fenced) -> int:
    return sum(len(t.data) for said in fenced.values() if said for t in said.tail)


def _without_tails(fenced: Fenced) -> Fenced:
    return {name: said and said._replace(tail=()) for name, said in fenced.items()}
