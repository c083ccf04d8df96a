"""Recordings as cameras: a file or an HTTP URL, paced at real time.

Who calls this: pipeline.py for `protocol: file` and `protocol: http`. Reading
as fast as the disk allows would flood the HLS window in a second; pacing to
the packets' timestamps makes a recording behave like a live camera. At the
end the source raises SourceEnded and the supervisor starts it over, which the
playlist marks as a discontinuity.
"""

from __future__ import annotations

import functools
import threading
from urllib.parse import urlsplit

import av

from camstream_worker.ingest.base import PacketSink, run_in_own_thread
from camstream_worker.ingest.demux import remux_input
from camstream_worker.ingest.rtsp import with_credentials


class FileSource:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        stall_timeout: float = 10.0,
        log_prefix: str = "",
    ) -> None:
        parts = urlsplit(url)
        self._remote = parts.scheme not in ("", "file")
        if not self._remote:
            self._target = parts.path
            self._options: dict[str, str] = {}
        else:
            self._target = with_credentials(url, username, password)
            self._options = {"rw_timeout": str(int(stall_timeout * 1_000_000))}
        self._log_prefix = log_prefix

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        def open_input() -> av.container.InputContainer:
            return av.open(self._target, options=self._options)

        await run_in_own_thread(
            functools.partial(
                remux_input,
                open_input,
                sink,
                stopping,
                realtime=True,
                remote=self._remote,
                log_prefix=self._log_prefix,
            ),
            name=f"file {self._log_prefix.strip()}",
        )
