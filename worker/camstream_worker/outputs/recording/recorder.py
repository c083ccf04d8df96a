"""The recorder of one stream: live segments into groups in the worker's spool.

Who calls this: the stream (stream.py) makes one when the stream's
spec.recording is enabled; its HLS writer hands it every finished segment
(`segment`, from whichever thread cuts segments); the stream closes it when
the stream stops here, for whatever reason. It never decodes or re-encodes:
the bytes recorded are the bytes the live playlist serves. It also keeps the
live DVR window (dvr.py) when the spec asks for one.

A group opens with the first segment and closes once it spans
`group_seconds` of program date-time (60 s by default: at most one PUT per
camera per minute), when the source session ends, or when the stream stops
here; its segments go to disk
as they come (spool.py), so a worker killed outright loses at most the
segment it was cutting. Closed groups are the uploader's (uploader.py).

fMP4 streams are not recorded yet: their segments need their init segment
in the group, which the format has no entry for (said once in the log).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import av

from camstream.recording import layout
from camstream.recording.groupfile import Entry
from camstream.recording.janitor import policy_json
from camstream.spec import RecordingOptions, StreamKey
from camstream_worker.outputs.hls.writer import SegmentWritten
from camstream_worker.outputs.recording import spool
from camstream_worker.outputs.recording.dvr import DvrWindow
from camstream_worker.packets import Packet

log = logging.getLogger(__name__)

# A group closes when it is this close to group_seconds: segments are cut on
# keyframes, so a 60 s group of 2 s segments may reach 59.99 s.
CLOSE_SLACK_MS = 500


def default_writer_name() -> str:
    """Who writes: the worker pod (or host), made safe for object keys."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class Recorder:
    def __init__(
        self,
        key: StreamKey,
        options: RecordingOptions,
        spool_root: Path,
        *,
        writer_name: str | None = None,
        log_prefix: str = "",
        dvr: DvrWindow | None = None,
    ) -> None:
        """`dvr`: the live DVR window to keep beside the live playlist, if any."""
        self.key = key
        self._options = options
        self._folder = spool.stream_folder(spool_root, key)
        # One writer id per recorder: a restarted stream (or the other owner
        # during a handoff) never writes the same object key.
        self.writer = layout.writer_id(
            f"{writer_name or default_writer_name()}-{secrets.token_hex(3)}"
        )
        self._prefix = log_prefix
        self._lock = threading.Lock()
        self._data: IO[bytes] | None = None
        self._journal: IO[bytes] | None = None
        self._path: Path | None = None
        self._entries: list[Entry] = []
        self._size = 0
        self._said_fmp4 = False
        self._dvr = dvr
        self.closed_groups = 0
        self._folder.mkdir(parents=True, exist_ok=True)
        for leftover, _ in spool.open_groups(self._folder.parent.parent):
            if leftover.parent == self._folder:
                spool.close_abandoned(leftover)  # an earlier life of this stream was killed
        self._write_retention()

    def _write_retention(self) -> None:
        wanted = policy_json(self._options.max_age_hours, self._options.max_bytes)
        path = self._folder / layout.RETENTION_OBJECT
        try:
            if path.read_bytes() == wanted:
                return
        except FileNotFoundError:
            pass
        spool.write_atomically(path, wanted)

    # -- the Output interface: packets are the HLS writer's business

    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        pass

    def write(self, index: int, packet: Packet) -> None:
        pass

    def end(self, *, keep_last: bool = True) -> None:
        """The source session ended (a reconnect, a stall, the stream stopping): the
        group closes, so a camera that stays away leaves nothing open for long.
        Called after the HLS writer's own end, whose last segment is already in."""
        with self._lock:
            self._close_group()

    def close(self) -> None:
        """The stream stops here: the open group is closed for upload."""
        with self._lock:
            self._close_group()

    def remove_files(self) -> None:
        # Recorded groups outlive the stream's stay on this worker; its DVR does not.
        if self._dvr is not None:
            self._dvr.remove()

    # -- segments, from the HLS writer

    def segment(self, written: SegmentWritten) -> None:
        if written.init is not None:
            if not self._said_fmp4:
                self._said_fmp4 = True
                log.warning(
                    "%sfMP4 segments are not recorded (use segmentType mpegts)", self._prefix
                )
            return
        if not written.data:
            return
        if self._dvr is not None:
            try:
                self._dvr.add(written)
            except OSError as exc:
                log.warning("%sDVR playlist not written: %s", self._prefix, exc.strerror)
        with self._lock:
            try:
                self._append(written)
            except OSError as exc:
                # A full or broken volume: this group is lost, the stream goes on.
                log.error("%srecording spool write failed: %s", self._prefix, exc.strerror)
                self._abandon()

    def _append(self, written: SegmentWritten) -> None:
        start_ms = int(written.started_at * 1000)
        if self._data is None:
            self._path = self._folder / f"{start_ms:013d}-{self.writer}{spool.OPEN}"
            self._data = open(self._path, "wb")
            self._journal = open(self._path.with_suffix(spool.JOURNAL), "wb")
            self._entries = []
            self._size = 0
        assert self._journal is not None
        entry = Entry(
            offset=self._size,
            size=len(written.data),
            duration_ms=max(1, round(written.duration * 1000)),
            start_ms=start_ms,
            sequence=written.sequence,
            discontinuity=written.discontinuity,
        )
        # Data first, then the journal line that names it (see spool.py).
        self._data.write(written.data)
        self._data.flush()
        self._journal.write(spool.journal_line(entry))
        self._journal.flush()
        self._entries.append(entry)
        self._size += entry.size
        span = entry.end_ms - self._entries[0].start_ms
        if span >= self._options.group_seconds * 1000 - CLOSE_SLACK_MS:
            self._close_group()

    def _close_group(self) -> None:
        if self._data is None or self._path is None:
            return
        self._data.close()
        if self._journal is not None:
            self._journal.close()
        path, entries = self._path, self._entries
        self._data = self._journal = self._path = None
        self._entries = []
        try:
            if spool.close_group(path, self.key, self.writer, entries) is not None:
                self.closed_groups += 1
        except OSError as exc:
            log.error("%sclosing a recorded group failed: %s", self._prefix, exc.strerror)

    def _abandon(self) -> None:
        for handle in (self._data, self._journal):
            if handle is not None:
                handle.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path.with_suffix(spool.JOURNAL).unlink(missing_ok=True)
        self._data = self._journal = self._path = None
        self._entries = []
