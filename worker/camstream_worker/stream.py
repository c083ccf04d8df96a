"""A stream on this worker: its source slot, its outputs and its status, in one object.

Who calls this: the engine (engine.py) makes one `Stream` per CameraStream it
runs, starts it, and stops it when the stream goes away or changes. Like a
MediaMTX path, the stream ties one source to its readers:

- the source slot: the stream's source (sources/kinds.py picks it once) and at
  most one `Session` of it, which the supervisor attaches for each attempt and
  detaches when the attempt ends (`attach`, `detach`);
- its outputs (outputs/): the HLS writer always, the ABR ladder, the
  thumbnail and the recorder (fed the writer's finished segments) when the
  spec asks for them; each session is handed to all of them;
- its status (state.StreamStatus), whose phase the supervisor drives and
  whose figures come from the sessions and the writer's segments.

Life: Stream(...) → start() → sessions come and go → stop(remove=...). Every
cleanup (the supervisor's last session, the outputs' threads, the files) is
in `stop`, whichever way the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from camstream.spec import StreamSpec
from camstream_worker.outputs.base import Output
from camstream_worker.outputs.hls.sequence import (
    TAIL_BYTES,
    Fenced,
    FirstNumber,
    SequenceStart,
    lead_of,
)
from camstream_worker.outputs.hls.writer import HlsWriter, SegmentWritten
from camstream_worker.outputs.recording.dvr import DvrWindow
from camstream_worker.outputs.recording.recorder import Recorder
from camstream_worker.outputs.thumbnail import Thumbnailer
from camstream_worker.outputs.transcode import SOURCE_FOLDER, Transcoder
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.session import Session
from camstream_worker.sources import kinds
from camstream_worker.sources.base import Context
from camstream_worker.sources.egress import Egress
from camstream_worker.state import Phase, StreamStatus, stream_dir
from camstream_worker.supervisor import Supervisor

log = logging.getLogger(__name__)


class Stream:
    def __init__(
        self,
        spec: StreamSpec,
        *,
        hls_root: Path,
        secrets: SecretResolver,
        egress: Egress,
        start: SequenceStart,
        discontinuity: bool,
        on_change: Callable[[StreamStatus], None],
        recording_spool: Path | None = None,
        await_fence: bool = False,
    ) -> None:
        """`start`: where the media sequence begins; `discontinuity`: the first
        segment continues an earlier life of the stream (a restart, a handoff);
        `recording_spool`: where recorded groups wait for upload (None: this
        worker does not record, whatever the spec says); `await_fence`: a
        handoff's new owner, whose writers number provisionally and publish
        nothing until `follow_on` (outputs/hls/writer.py, "The fence")."""
        self.spec = spec
        self.prefix = f"[{spec.key}] "
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        self._folder = hls_root / stream_dir(spec.key)
        self._status = StreamStatus(
            key=spec.key, protocol=spec.source.protocol, phase=Phase.PENDING, since=time.time()
        )
        self._session: Session | None = None
        self._bytes_before = 0  # of the sessions before the current one
        self._live_since: float | None = None
        self._recorder = self._make_recorder(recording_spool)
        self._awaiting_fence = await_fence
        self._writer, self._transcoder, self._thumbnailer = self._make_outputs(start, discontinuity)
        # The writer goes last: it holds packets and muxes them (in place) later.
        # The recorder is fed by the writer's segments, and closed after it.
        self._outputs: tuple[Output, ...] = tuple(
            o
            for o in (self._thumbnailer, self._transcoder, self._writer, self._recorder)
            if o is not None
        )
        self.source = kinds.make_source(
            spec,
            Context(secrets=secrets, log_prefix=self.prefix, note=self.note, egress=egress),
        )
        self._supervisor = Supervisor(self)

    def _make_recorder(self, spool: Path | None) -> Recorder | None:
        recording = self.spec.recording
        if recording is None or not recording.enabled or spool is None:
            return None
        # The DVR lives beside the passthrough playlist (with a ladder, in its folder).
        live = self._folder / SOURCE_FOLDER if self.spec.transcode.enabled else self._folder
        dvr = None
        if recording.dvr_minutes > 0:
            live.mkdir(parents=True, exist_ok=True)
            dvr = DvrWindow(live, recording.dvr_minutes, self.spec.hls.segment_seconds)
        return Recorder(self.spec.key, recording, spool, log_prefix=self.prefix, dvr=dvr)

    def _make_outputs(
        self, start: SequenceStart, discontinuity: bool
    ) -> tuple[HlsWriter, Transcoder | None, Thumbnailer | None]:
        spec, folder = self.spec, self._folder
        sequence = FirstNumber(start)  # one for all the stream's writers
        transcoder = thumbnailer = None
        if spec.transcode.enabled:
            transcoder = Transcoder(
                folder,
                spec.transcode.renditions,
                spec.hls,
                start_sequence=sequence,
                log_prefix=self.prefix,
                await_fence=self._awaiting_fence,
            )
        if spec.thumbnail.enabled:
            thumbnailer = Thumbnailer(
                folder, spec.thumbnail.interval_seconds, log_prefix=self.prefix
            )
        writer = HlsWriter(
            # With a ladder, the passthrough copy is one variant of several.
            folder / SOURCE_FOLDER if transcoder is not None else folder,
            spec.hls,
            start_sequence=sequence,
            discontinuity_on_first=discontinuity,
            on_segment=self._segment_from_any_thread,
            # The recorder (and its DVR window) hears of a segment once its
            # number is final, never a handoff's provisional one.
            on_published=self._recorder.segment if self._recorder is not None else None,
            # Only the recorder reads a segment's bytes; without it the writer
            # never holds or rereads a whole segment.
            keep_data=self._recorder is not None,
            await_fence=self._awaiting_fence,
        )
        return writer, transcoder, thumbnailer

    def _writers(self) -> dict[str, HlsWriter]:
        """Every HLS writer of the stream, by its folder under the stream's ("" for its own)."""
        if self._transcoder is None:
            return {"": self._writer}
        return {SOURCE_FOLDER: self._writer, **self._transcoder.writers}

    # -- life

    def start(self) -> None:
        self._supervisor.start()

    async def stop(self, *, remove: bool = False) -> None:
        """End the stream here and end in Stopped.

        remove=True: the stream is leaving this worker (deleted, disabled,
        handed off): its unfinished segment is dropped and its files deleted.
        Otherwise (a restart with a new spec, the worker shutting down) the
        last segment is written and the files stay for whoever continues.
        """
        await self._supervisor.stop(keep_last=not remove)
        await asyncio.to_thread(self._close_outputs)
        self.set_phase(Phase.STOPPED, "Stopped", "")
        if remove:
            self._remove_files()

    @property
    def awaiting_fence(self) -> bool:
        """Whether its writers still number provisionally (a handoff's new owner before
        `follow_on`): a restart of the stream meanwhile must keep waiting."""
        return self._awaiting_fence

    def fence(self, tail_bytes: int = TAIL_BYTES) -> Fenced:
        """Stop publishing, the stream's new owner continues: each writer's last
        number, the wall time that segment was cut and its newest segments, within
        one budget of `tail_bytes` for all of them (None: it published none)."""
        fenced: Fenced = {}
        budget = tail_bytes
        for name, writer in self._writers().items():
            said = fenced[name] = writer.fence(budget)
            if said is not None:
                budget -= sum(len(t.data) for t in said.tail)
        return fenced

    def follow_on(self, answers: Fenced | None) -> None:
        """Publish, following the old owner's numbers where it said them (`answers`,
        by writer as `fence` gives them, times on this machine's wall clock); a
        writer with no answer (None: the old owner could not be asked) publishes
        its provisional numbers. Blocking (renames, the recorder's writes): in a thread."""
        self._awaiting_fence = False
        for name, writer in self._writers().items():
            answer = answers.get(name) if answers is not None else None
            if answer is None:
                writer.publish_provisional()
                continue
            listed_before = writer.inherited_segments
            plan = writer.follow_on(answer.last, answer.end, answer.tail)
            log.info(
                "%sfollows on at %d%s: %d segments kept, %d covered by the old owner,"
                " %d of its listed here",
                self.prefix,
                answer.last + 1,
                f" ({name})" if name else "",
                len(plan.numbers),
                len(plan.dropped),
                writer.inherited_segments - listed_before,
            )

    def continuation(self) -> SequenceStart:
        """Where the same stream restarted on this worker continues its media sequence."""
        return self._writer.continuation()

    def _close_outputs(self) -> None:
        for output in self._outputs:
            output.close()

    def _remove_files(self) -> None:
        """A deleted stream leaves nothing behind: segments, playlists, stills."""
        for output in self._outputs:
            output.remove_files()
        for leftover in self._folder.glob("*"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._folder.rmdir()

    # -- the source slot (the supervisor's side)

    def attach(self) -> Session:
        """A fresh session for the next attempt of the source."""
        assert self._session is None, "one session at a time"
        self._session = Session(self._outputs)
        return self._session

    def detach(self, session: Session, *, keep_last: bool = True) -> None:
        """End a session: the outputs finish the segment in progress (or drop it).

        Called again for a session already detached, it does nothing more. The
        session's figures stay in the status until the next one knows better.
        """
        session.end(keep_last=keep_last)
        if self._session is session:
            self._status = self.status
            self._bytes_before += session.bytes_in
            self._session = None

    @property
    def live_since(self) -> float | None:
        return self._live_since

    # -- status

    @property
    def status(self) -> StreamStatus:
        session = self._session
        if session is None:
            return self._status
        return dataclasses.replace(
            self._status,
            thumbnail=self._thumbnailer is not None and self._thumbnailer.written > 0,
            bytes_in=self._bytes_before + session.bytes_in,
            video_codec=session.video_codec or self._status.video_codec,
            audio_codec=session.audio_codec or self._status.audio_codec,
            width=session.width or self._status.width,
            height=session.height or self._status.height,
        )

    def set_phase(self, phase: Phase, reason: str, message: str) -> None:
        if phase is not Phase.LIVE:
            self._live_since = None
        current = self._status
        if (current.phase, current.reason, current.message) == (phase, reason, message):
            return
        self._status = dataclasses.replace(
            current, phase=phase, reason=reason, message=message, since=time.time()
        )
        self._on_change(self.status)

    def reconnecting(self, reason: str, message: str) -> None:
        """A session failed in a way that may heal: count it and say so."""
        self._status = dataclasses.replace(self._status, reconnects=self._status.reconnects + 1)
        self.set_phase(Phase.RECONNECTING, reason, message)

    def note(self, reason: str, message: str) -> None:
        """Show why a stream that is not live yet is still waiting (e.g. a refused publisher).

        A live stream is not touched: a stranger must not be able to change
        the state of a working camera by knocking with a wrong key.
        """
        if self._status.phase in (Phase.CONNECTING, Phase.RECONNECTING):
            self.set_phase(self._status.phase, reason, message)

    def _segment_from_any_thread(self, segment: SegmentWritten) -> None:
        self._loop.call_soon_threadsafe(
            self._segment_written, dataclasses.replace(segment, data=b"")
        )

    def _segment_written(self, segment: SegmentWritten) -> None:
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
        if self._transcoder is not None:
            self._transcoder.source_segment_written(segment.size, segment.duration)
        session_running = self._session is not None and self._session.active
        # The last segment of a session that just died must not claim Live.
        if session_running and self._status.phase in (Phase.CONNECTING, Phase.RECONNECTING):
            self._live_since = time.monotonic()
            self.set_phase(Phase.LIVE, "Streaming", "")
        if segment.forced and self._status.phase is Phase.LIVE:
            # Stays until the stream's phase changes: a long-GOP camera would
            # otherwise flip its status (a write each time) every keyframe.
            self.set_phase(
                Phase.LIVE,
                "KeyframeIntervalTooLong",
                f"no keyframe within {self._writer.max_segment_seconds:.0f} s: segments are"
                " cut without one, so new viewers may wait for a picture; set the camera's"
                f" keyframe interval to at most {self.spec.hls.segment_seconds} s",
            )
