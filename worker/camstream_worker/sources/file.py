"""Recordings as cameras: a file or an HTTP URL, paced at real time.

Who calls this: kinds.py, for `protocol: file` and `protocol: http`. Reading
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

from camstream.spec import StreamSpec
from camstream_worker.sources.base import (
    Context,
    PacketSink,
    run_in_own_thread,
    url_with_credentials,
)
from camstream_worker.sources.demux import remux_input


class FileSource:
    pushed = False

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        source = spec.source
        assert source.url is not None  # spec.py requires one for file and http
        self._url = source.url
        self._credentials = source.credentials
        self._namespace = spec.key.namespace
        self._context = context
        parts = urlsplit(source.url)
        self._remote = parts.scheme not in ("", "file")
        self._options: dict[str, str] = {}
        if self._remote:
            self._options["rw_timeout"] = str(int(source.stall_timeout_seconds * 1_000_000))

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        # Resolved for a local file too: a missing Secret is an error either way.
        target = await url_with_credentials(
            self._url, self._credentials, self._context.secrets, self._namespace
        )
        if not self._remote:
            target = urlsplit(self._url).path

        def open_input() -> av.container.InputContainer:
            return av.open(target, options=self._options)

        prefix = self._context.log_prefix
        await run_in_own_thread(
            functools.partial(
                remux_input,
                open_input,
                sink,
                stopping,
                realtime=True,
                remote=self._remote,
                log_prefix=prefix,
            ),
            name=f"file {prefix.strip()}",
        )
