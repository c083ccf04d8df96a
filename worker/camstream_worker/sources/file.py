"""Recordings on the worker's own disk as cameras, paced at real time (standalone mode only).

Who calls this: kinds.py, for `protocol: file`, which spec.py lets through
only in standalone mode (a cluster refuses it: a stream author must not read
a worker's disk). Even there a path is read only inside the worker's file
roots (`--file-root`; by default the folders of its manifests): the file is
opened here first, the real path of what was opened (symbolic links and ".."
resolved, read back from /proc, so nothing can be swapped in between) is
checked against the roots, and FFmpeg reads that open file through the `fd`
protocol, with no demuxer that would open further paths (whitelists.py).

Pacing: as for HTTP (http.py), a recording is held back to real time, and
at its end the supervisor starts it over.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
from urllib.parse import unquote, urlsplit

import av

from camstream.spec import StreamSpec
from camstream_worker.errors import SourceError, SourceNotAllowed
from camstream_worker.sources import whitelists
from camstream_worker.sources.base import Context, PacketSink, run_in_own_thread
from camstream_worker.sources.demux import remux_input
from camstream_worker.sources.policy import SourcePolicy


class FileSource:
    pushed = False

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        assert spec.source.url is not None  # spec.py requires one for file
        self._path = local_path(spec.source.url)
        self._context = context

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        fd = open_confined(self._path, self._context.egress.policy)
        options = {"fd": str(fd), **whitelists.options_for("file")}

        def open_input() -> av.container.InputContainer:
            return av.open("fd:", options=options)  # FFmpeg reads a duplicate of fd

        prefix = self._context.log_prefix
        try:
            await run_in_own_thread(
                functools.partial(
                    remux_input,
                    open_input,
                    sink,
                    stopping,
                    realtime=True,
                    remote=False,
                    log_prefix=prefix,
                ),
                name=f"file {prefix.strip()}",
            )
        finally:
            os.close(fd)


def local_path(url: str) -> str:
    """The path a `protocol: file` url names (a plain path, or file:///path)."""
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else url


def open_confined(path: str, policy: SourcePolicy) -> int:
    """Open `path` for reading if what it really is lies in a file root; else raise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SourceError("no such file") from None
    except OSError as exc:
        raise SourceError(f"cannot open the file ({type(exc).__name__})") from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not policy.file_allowed(real) or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceNotAllowed(
                "not a file inside the worker's file roots (camstream run --file-root)"
            )
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
