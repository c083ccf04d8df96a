"""The live DVR window: dvr.m3u8 beside the live playlist, reaching minutes back.

Who calls this: the recorder, for each segment of a recorded stream with
spec.recording.dvrMinutes > 0. The live playlist (index.m3u8) keeps a few
segments for low latency; dvr.m3u8 lists the same segments, with the same
media sequence numbers, program date-times and discontinuities, over
`minutes`, so a viewer can rewind the live stream. Older moments play from
the recording (the player page's timeline).

Each listed segment is a hard link (`dvr<sequence>.ts`) to the live segment
the HLS writer wrote: no byte is written twice, and the writer deleting its
name after its own window leaves the link. Where a link cannot be made (the
writer's file already gone) the recorder's copy of the bytes is written.
It is served by the stream's owner, like the live playlist (any worker
forwards to it). A stream leaving this worker takes its DVR files with it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from camstream_worker.outputs.hls.playlist import (
    Segment,
    render_media_playlist,
    slide_window,
    target_duration,
)
from camstream_worker.outputs.hls.writer import SegmentWritten

PLAYLIST = "dvr.m3u8"
PREFIX = "dvr"


class DvrWindow:
    def __init__(self, folder: Path, minutes: int, segment_seconds: int) -> None:
        self._folder = folder
        self._segment_seconds = segment_seconds
        # Whole segments: the window is counted in them, as the live playlist's is.
        self._window = max(2, (minutes * 60) // max(1, segment_seconds))
        self._listed: tuple[Segment, ...] = ()
        self._discontinuity_sequence = 0
        self._target = segment_seconds
        # What an earlier life of the stream here left (a restart): nobody lists it now.
        for stale in folder.glob(f"{PREFIX}*.ts"):
            stale.unlink(missing_ok=True)

    def add(self, written: SegmentWritten) -> None:
        uri = f"{PREFIX}{written.sequence}.ts"
        target = self._folder / uri
        source = self._folder / f"seg{written.sequence}.ts"
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        except OSError:
            _write(target, written.data)  # the writer's file is gone (or another volume)
        segment = Segment(
            sequence=written.sequence,
            uri=uri,
            duration=written.duration,
            discontinuity=written.discontinuity,
            program_date_time=written.started_at,
        )
        listed, dropped, self._discontinuity_sequence = slide_window(
            (*self._listed, segment), self._window, self._discontinuity_sequence
        )
        self._listed = listed
        self._target = max(self._target, target_duration(listed, self._segment_seconds))
        text = render_media_playlist(
            listed, target=self._target, discontinuity_sequence=self._discontinuity_sequence
        )
        _write(self._folder / PLAYLIST, text.encode())
        for old in dropped:
            (self._folder / old.uri).unlink(missing_ok=True)

    def remove(self) -> None:
        """The stream leaves this worker: its DVR files go (the recording stays)."""
        for segment in self._listed:
            (self._folder / segment.uri).unlink(missing_ok=True)
        (self._folder / PLAYLIST).unlink(missing_ok=True)
        self._listed = ()


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.write_bytes(data)
    os.replace(temporary, path)
