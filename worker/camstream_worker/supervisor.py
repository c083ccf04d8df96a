"""One stream's source, kept running: retries, backoff and the stall watchdog.

Who calls this: each stream (stream.py) owns one `Supervisor` and starts and
stops it with itself. The supervisor owns everything about retrying: backoff
with jitter between attempts, the stall watchdog (no packet for
stallTimeoutSeconds while a session runs), and the choice between Reconnecting
(transient errors) and Failed (errors a person must fix, retried slowly so a
fixed Secret heals the stream without a restart). Sources only raise; the
stream keeps the status, the supervisor tells it which phase it is in (the
state machine is drawn in state.py).

Each attempt runs the source as a task on a fresh session of the stream and
waits for one of: the source raising, the watchdog firing, or a stop request.
A source's thread is always awaited before the next attempt, so two sessions
never feed one stream's outputs. The watchdog measures silence on the
event loop's working time: if the loop itself stalled (how late each watch
woke up), that time is not held against the camera.

What differs between a camera we pull and one that pushes to us is read from
the source's one trait, `pushed`: a pushing camera decides when it comes (no
opening deadline) and when it comes back (quick retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Protocol

from camstream.retry import Backoff
from camstream.spec import StreamSpec
from camstream_worker.errors import (
    MediaError,
    PermanentSourceError,
    SourceError,
    SourceStalled,
    SourceUnreachable,
)
from camstream_worker.session import Session
from camstream_worker.sources.base import Source
from camstream_worker.state import Phase

log = logging.getLogger(__name__)

LIVE_RESETS_BACKOFF_AFTER = 30.0
WATCH_INTERVAL = 0.25
PULL_BACKOFF = Backoff()
PULL_FAILED_RETRY_SECONDS = 60.0
PUSH_BACKOFF = Backoff(initial=0.05, cap=0.5)
PUSH_FAILED_RETRY_SECONDS = 5.0


class Supervised(Protocol):
    """What the supervisor drives (a stream.Stream)."""

    spec: StreamSpec
    source: Source
    prefix: str  # "[namespace/name] "

    @property
    def live_since(self) -> float | None:
        """Monotonic time the stream went Live; None while it is not."""
        ...

    def attach(self) -> Session: ...

    def detach(self, session: Session, *, keep_last: bool = True) -> None: ...

    def set_phase(self, phase: Phase, reason: str, message: str) -> None: ...

    def reconnecting(self, reason: str, message: str) -> None: ...


class LoopDelays:
    """How late the event loop ran, as spans of monotonic time, to leave out of silences.

    `since(t)` is the part of those spans after `t`: a camera silent since
    its last packet at `t` was silent for `now - t - since(t)` seconds of
    the loop's working time. Spans that ended before the moment asked about
    are forgotten (moments asked about only move forward), and so are spans
    that ended more than `keep` seconds before the newest: a stream waiting
    for its camera asks nothing for days.
    """

    def __init__(self, keep: float) -> None:
        self._keep = keep
        self._spans: list[tuple[float, float]] = []

    def add(self, start: float, end: float) -> None:
        if end > start:
            self._spans.append((start, end))
            if self._spans[0][1] < end - self._keep:
                self._spans = [(a, b) for a, b in self._spans if b >= end - self._keep]

    def since(self, moment: float) -> float:
        self._spans = [(a, b) for a, b in self._spans if b > moment]
        return sum(b - max(a, moment) for a, b in self._spans)


class Supervisor:
    def __init__(self, stream: Supervised) -> None:
        self._stream = stream
        pushed = stream.source.pushed
        self._backoff = PUSH_BACKOFF if pushed else PULL_BACKOFF
        self._failed_retry = PUSH_FAILED_RETRY_SECONDS if pushed else PULL_FAILED_RETRY_SECONDS
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[None]] = set()
        self._keep_last = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"stream {self._stream.spec.key}")

    async def stop(self, *, keep_last: bool = True) -> None:
        """Stop the source and wait for its session to end.

        keep_last=False: the stream is leaving this worker (handoff, delete),
        so its unfinished segment is dropped; writing it would put a number in
        the playlist ahead of what the new owner continues with.
        """
        self._keep_last = keep_last
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        stream = self._stream
        attempt = 0
        while not self._stop.is_set():
            if attempt == 0:
                stream.set_phase(Phase.CONNECTING, "Connecting", "")
            try:
                await self._attempt()
                return  # only a stop request ends an attempt without an error
            except PermanentSourceError as exc:
                stream.set_phase(Phase.FAILED, exc.reason, str(exc))
                log.warning("%sfailed: %s", stream.prefix, exc)
                delay = self._failed_retry
            except MediaError as exc:
                live_since = stream.live_since
                if live_since and time.monotonic() - live_since > LIVE_RESETS_BACKOFF_AFTER:
                    attempt = 0
                attempt += 1
                stream.reconnecting(exc.reason, str(exc))
                delay = self._backoff.delay(attempt)
                log.info("%s%s; retry %d in %.1fs", stream.prefix, exc, attempt, delay)
            except Exception as exc:  # a bug in a source must not kill the worker
                log.exception("%sunexpected error in the source", stream.prefix)
                attempt += 1
                stream.set_phase(Phase.RECONNECTING, "InternalError", type(exc).__name__)
                delay = self._backoff.delay(attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _attempt(self) -> None:
        stream = self._stream
        stopping = threading.Event()
        session = stream.attach()
        run: asyncio.Task[None] = asyncio.create_task(stream.source.run(session, stopping))
        stall = float(stream.spec.source.stall_timeout_seconds)
        # A pushing camera may take any time to come; a pulled one must start
        # sending soon after we connect (FFmpeg can sit in its probe forever).
        open_deadline = None if stream.source.pushed else time.monotonic() + 2 * stall
        # The loop's own delays (how late each watch woke up) are not the
        # camera's silence: after a stall of the whole process, the packets it
        # sent meanwhile are still in the kernel, and a camera must not be
        # blamed, dropped and marked Reconnecting for the server's stall.
        delays = LoopDelays(keep=4 * stall + 60)
        started = time.monotonic()
        try:
            while not run.done():
                if self._stop.is_set():
                    stopping.set()
                    break
                now = time.monotonic()
                last_packet = session.last_packet_at
                if session.active and now - last_packet - delays.since(last_packet) > stall:
                    stopping.set()
                    await self._finish(run, session, grace=stall)
                    raise SourceStalled(f"no packet for {stall:.0f}s")
                if (
                    not session.active
                    and open_deadline is not None
                    and now - delays.since(started) > open_deadline
                ):
                    stopping.set()
                    await self._finish(run, session, grace=stall)
                    # As any pulled source that does not open: the one uniform answer.
                    raise _unreachable(stream, f"connected, but no stream within {2 * stall:.0f}s")
                await asyncio.wait({run}, timeout=WATCH_INTERVAL)
                if not run.done():
                    woke = time.monotonic()
                    delays.add(woke - max(0.0, woke - now - WATCH_INTERVAL), woke)
            await asyncio.shield(run)  # raises the source's error, or returns on stop
            if not self._stop.is_set():
                raise SourceError("the source returned without an error")
        except asyncio.CancelledError:
            stopping.set()
            with contextlib.suppress(BaseException):
                await run
            raise
        finally:
            stream.detach(session, keep_last=self._keep_last or not self._stop.is_set())

    async def _finish(self, run: asyncio.Task[None], session: Session, grace: float) -> None:
        """Give a stopping source `grace` seconds; abandon it if FFmpeg is stuck.

        A thread blocked inside FFmpeg cannot be interrupted without a
        per-call Python callback (which doubled CPU when measured); instead
        its session is closed, so whatever it reads later goes nowhere, and
        the thread ends at its next packet or I/O timeout.
        """
        await asyncio.wait({run}, timeout=grace)
        if not run.done():
            log.warning("%sabandoning a source stuck in FFmpeg", self._stream.prefix)
            self._stream.detach(session)
            self._abandoned.add(run)
            run.add_done_callback(self._forget)

    def _forget(self, run: asyncio.Task[None]) -> None:
        self._abandoned.discard(run)
        if not run.cancelled():
            run.exception()  # retrieved: its error no longer matters


def _unreachable(stream: Supervised, detail: str) -> SourceUnreachable:
    """The uniform error (errors.py), with what happened in the log only."""
    log.info("%scould not open the source: %s", stream.prefix, detail)
    return SourceUnreachable(detail)
