"""One stream, kept alive: the state machine of state.py driven by its source.

Who calls this: engine.py creates one `StreamRunner` per stream it owns and
stops it when the stream goes away. The runner owns everything about retrying:
backoff with jitter between attempts, the stall watchdog (no packet for
stallTimeoutSeconds while a session runs), and the choice between Reconnecting
(transient errors) and Failed (errors a person must fix, retried slowly so a
fixed Secret heals the stream without a restart). Sources only raise.

Each attempt runs the source as a task and waits for one of: the source
raising, the watchdog firing, or a stop request. A source's thread is always
awaited before the next attempt, so two sessions never feed one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from camstream.retry import Backoff
from camstream.spec import StreamSpec
from camstream_worker.errors import (
    MediaError,
    PermanentSourceError,
    SourceError,
    SourceStalled,
)
from camstream_worker.outputs.hls.sequence import lead_of
from camstream_worker.outputs.hls.writer import HlsWriter, SegmentWritten
from camstream_worker.outputs.thumbnail import Thumbnailer
from camstream_worker.outputs.transcode import Transcoder
from camstream_worker.pipeline import PipelineSink
from camstream_worker.sources.base import Source
from camstream_worker.state import Phase, StreamStatus

log = logging.getLogger(__name__)

FAILED_RETRY_SECONDS = 60.0
LIVE_RESETS_BACKOFF_AFTER = 30.0
WATCH_INTERVAL = 0.25
PULL_BACKOFF = Backoff()
# A pushing camera decides when it comes back: be ready for it soon.
PUSH_BACKOFF = Backoff(initial=0.05, cap=0.5)
PUSH_FAILED_RETRY_SECONDS = 5.0


class StreamRunner:
    def __init__(
        self,
        spec: StreamSpec,
        writer: HlsWriter,
        source: Source,
        *,
        on_change: Callable[[StreamStatus], None],
        thumbnailer: Thumbnailer | None = None,
        transcoder: Transcoder | None = None,
    ) -> None:
        self.spec = spec
        self.writer = writer
        self.source = source
        self.thumbnailer = thumbnailer
        self.transcoder = transcoder
        self._on_change = on_change
        self._backoff = PUSH_BACKOFF if source.pushed else PULL_BACKOFF
        self._failed_retry = PUSH_FAILED_RETRY_SECONDS if source.pushed else FAILED_RETRY_SECONDS
        self._prefix = f"[{spec.key}] "
        self._status = StreamStatus(
            key=spec.key, protocol=spec.source.protocol, phase=Phase.PENDING, since=time.time()
        )
        self._sink: PipelineSink | None = None
        self._bytes_before = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._live_since: float | None = None
        self._abandoned: set[asyncio.Task[None]] = set()
        self._keep_last = True

    @property
    def status(self) -> StreamStatus:
        sink = self._sink
        if sink is None:
            return self._status
        return dataclasses.replace(
            self._status,
            thumbnail=self.thumbnailer is not None and self.thumbnailer.written > 0,
            bytes_in=self._bytes_before + sink.bytes_in,
            video_codec=sink.video_codec or self._status.video_codec,
            audio_codec=sink.audio_codec or self._status.audio_codec,
            width=sink.width or self._status.width,
            height=sink.height or self._status.height,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"stream {self.spec.key}")

    async def stop(self, *, keep_last: bool = True) -> None:
        """Stop the source and end in Stopped.

        keep_last=False: the stream is leaving this worker (handoff, delete),
        so its unfinished segment is dropped; writing it would put a number in
        the playlist ahead of what the new owner continues with.
        """
        self._keep_last = keep_last
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.transcoder is not None:
            await asyncio.to_thread(self.transcoder.close)
        self._set(Phase.STOPPED, "Stopped", "")

    def note(self, reason: str, message: str) -> None:
        """Show why a stream that is not live yet is still waiting (e.g. a refused publisher).

        A live stream is not touched: a stranger must not be able to change
        the state of a working camera by knocking with a wrong key.
        """
        if self._status.phase in (Phase.CONNECTING, Phase.RECONNECTING):
            self._set(self._status.phase, reason, message)

    def segment_written(self, segment: SegmentWritten) -> None:
        """Writer callback, already moved to the event loop."""
        self._status = dataclasses.replace(
            self._status,
            segments=self._status.segments + 1,
            last_segment_at=time.time(),
            media_sequence=segment.sequence,
            sequence_lead=(
                self._status.sequence_lead
                if self._status.sequence_lead is not None
                else lead_of(segment.sequence, segment.written_at, self.spec.hls.segment_seconds)
            ),
            discontinuity_sequence=segment.discontinuity_sequence,
        )
        if self.transcoder is not None:
            self.transcoder.source_segment_written(segment.size, segment.duration)
        session_running = self._sink is not None and self._sink.active
        # The last segment of a session that just died must not claim Live.
        if session_running and self._status.phase in (Phase.CONNECTING, Phase.RECONNECTING):
            self._live_since = time.monotonic()
            self._set(Phase.LIVE, "Streaming", "")

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if attempt == 0:
                self._set(Phase.CONNECTING, "Connecting", "")
            try:
                await self._attempt()
                return  # only a stop request ends an attempt without an error
            except PermanentSourceError as exc:
                self._set(Phase.FAILED, exc.reason, str(exc))
                log.warning("%sfailed: %s", self._prefix, exc)
                delay = self._failed_retry
            except MediaError as exc:
                if (
                    self._live_since
                    and time.monotonic() - self._live_since > LIVE_RESETS_BACKOFF_AFTER
                ):
                    attempt = 0
                attempt += 1
                self._status = dataclasses.replace(
                    self._status, reconnects=self._status.reconnects + 1
                )
                self._set(Phase.RECONNECTING, exc.reason, str(exc))
                delay = self._backoff.delay(attempt)
                log.info("%s%s; retry %d in %.1fs", self._prefix, exc, attempt, delay)
            except Exception as exc:  # a bug in a source must not kill the worker
                log.exception("%sunexpected error in the source", self._prefix)
                attempt += 1
                self._set(Phase.RECONNECTING, "InternalError", type(exc).__name__)
                delay = self._backoff.delay(attempt)
            self._live_since = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _attempt(self) -> None:
        stopping = threading.Event()
        sink = PipelineSink(self.writer, self.thumbnailer, self.transcoder)
        if self._sink is not None:
            # Keep what the last session taught us until the new one knows better.
            self._bytes_before += self._sink.bytes_in
            self._status = self.status
        self._sink = sink
        run: asyncio.Task[None] = asyncio.create_task(self.source.run(sink, stopping))
        stall = float(self.spec.source.stall_timeout_seconds)
        # A pushing camera may take any time to come; a pulled one must start
        # sending soon after we connect (FFmpeg can sit in its probe forever).
        open_deadline = None if self.source.pushed else time.monotonic() + 2 * stall
        try:
            while not run.done():
                if self._stop.is_set():
                    stopping.set()
                    break
                now = time.monotonic()
                if sink.active and now - sink.last_packet_at > stall:
                    stopping.set()
                    await self._finish(run, sink, grace=stall)
                    raise SourceStalled(f"no packet for {stall:.0f}s")
                if not sink.active and open_deadline is not None and now > open_deadline:
                    stopping.set()
                    await self._finish(run, sink, grace=stall)
                    raise SourceStalled(f"connected, but no stream within {2 * stall:.0f}s")
                await asyncio.wait({run}, timeout=WATCH_INTERVAL)
            await asyncio.shield(run)  # raises the source's error, or returns on stop
            if not self._stop.is_set():
                raise SourceError("the source returned without an error")
        except asyncio.CancelledError:
            stopping.set()
            with contextlib.suppress(BaseException):
                await run
            raise
        finally:
            sink.end(keep_last=self._keep_last or not self._stop.is_set())

    async def _finish(self, run: asyncio.Task[None], sink: PipelineSink, grace: float) -> None:
        """Give a stopping source `grace` seconds; abandon it if FFmpeg is stuck.

        A thread blocked inside FFmpeg cannot be interrupted without a
        per-call Python callback (which doubled CPU when measured); instead
        its sink is closed, so whatever it reads later goes nowhere, and the
        thread ends at its next packet or I/O timeout.
        """
        await asyncio.wait({run}, timeout=grace)
        if not run.done():
            log.warning("%sabandoning a source stuck in FFmpeg", self._prefix)
            sink.end()
            self._abandoned.add(run)
            run.add_done_callback(self._forget)

    def _forget(self, run: asyncio.Task[None]) -> None:
        self._abandoned.discard(run)
        if not run.cancelled():
            run.exception()  # retrieved: its error no longer matters

    def _set(self, phase: Phase, reason: str, message: str) -> None:
        current = self._status
        if (current.phase, current.reason, current.message) == (phase, reason, message):
            return
        self._status = dataclasses.replace(
            current, phase=phase, reason=reason, message=message, since=time.time()
        )
        self._on_change(self.status)
