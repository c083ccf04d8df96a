"""The one interface every source kind implements, and the sink it feeds.

Who calls this: pipeline.py runs one `Source` per stream under the supervisor.
A source knows how to get packets from one kind of camera; it knows nothing of
retries, backoff or watchdogs (the supervisor owns those) nor of HLS (the sink
does).

`run` returns only by raising: a source that ends raises SourceEnded, so the
supervisor's loop has one exit path to reason about.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import av

# PyAV codec names we can carry in MPEG-TS without decoding.
VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac"})


class PacketSink(Protocol):
    """Receives one source session: templates first, then their packets."""

    def begin(self, templates: Sequence[av.stream.Stream]) -> None: ...

    def packet(self, index: int, packet: av.Packet) -> None: ...


class Source(Protocol):
    """One camera, read until stopped or failed."""

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        """Feed `sink` until `stopping` is set (then return) or raise MediaError."""
        ...


T = TypeVar("T")


async def run_in_own_thread(function: Callable[[], T], *, name: str) -> T:
    """Run a blocking source loop in a thread of its own and await its end.

    Not asyncio.to_thread: its shared executor has min(32, cores + 4) threads,
    and a source occupies its thread for the whole session, so a 2-core
    worker could run only six pulled cameras at once and queued the rest.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def target() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting task, not lost in the thread
            error = exc  # `exc` is unbound after the except block; the callback runs later
            loop.call_soon_threadsafe(settle, lambda: done.set_exception(error))
        else:
            loop.call_soon_threadsafe(settle, lambda: done.set_result(result))

    threading.Thread(target=target, name=name, daemon=True).start()
    return await done
