"""One engine process of the pool (sharded.py has the whole picture).

Who calls this: the parent (process.py) starts a fresh interpreter on this
module, `python -m camstream_worker.pool.child CONTROL_FD CONNECTIONS_FD`,
with the child's ends of the two channels of ipc.py inherited under those
numbers: the control pipe to the parent and the socket on which the parent
passes RTMP connections. The parent's first message on the control pipe is
the process's settings (`ipc.Settings`). The process runs
an `Engine` for its share of the streams and an RTMP listener with no
listening socket of its own; it reports status changes at once and a
snapshot of every stream's counters each second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from camstream.spec import SecretRef
from camstream_worker.engine import Engine
from camstream_worker.errors import SecretError
from camstream_worker.pool import ipc
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.rtmp.listener import RtmpServer
from camstream_worker.sources.policy import SourcePolicy

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 1.0
# Allocations of container objects between two collections of the youngest
# generation (CPython's default: 700). An engine makes a few such objects per
# frame (~15,000 frames a second at 200 streams) and holds each frame about
# half a second before muxing it (outputs/hls/writer.py), so at the default
# nearly every frame outlived two young collections and died in the oldest
# generation, whose full collections then scanned the whole heap: the cyclic
# GC was ~2 % of an engine's samples at N = 400 (bench/README.md). At this
# threshold (a few seconds of allocations) most frames die before a
# collection sees them; reference counting frees them as before, and the
# cycles it cannot free are rare here and wait a few seconds longer.
GC_YOUNG_THRESHOLD = 100_000


def main(argv: list[str]) -> int:
    """The engine process: argv is the two inherited descriptors (control, connections)."""
    # The parent decides when children stop; Ctrl-C in a terminal reaches the
    # whole process group, and the child must not die before handing off.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control, connections = ipc.child_ends(int(argv[0]), int(argv[1]))
    try:
        settings = control.recv()
    except (EOFError, OSError):
        return 1  # the parent left before it said what to run
    if not isinstance(settings, ipc.Settings):
        raise SystemExit(f"engine process: expected settings first, got {type(settings).__name__}")
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[engine-{settings.index}]: %(message)s",
    )
    spool = Path(settings.recording_spool) if settings.recording_spool is not None else None
    # What the imports made lives as long as the process: out of the collector's sight.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    asyncio.run(
        _Child(
            control,
            connections,
            Path(settings.hls_root),
            settings.sources,
            settings.rtmp_limits,
            spool,
        ).run()
    )
    return 0


class _ParentSecrets:
    """SecretResolver that asks the parent process."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send
        self.requests: ipc.Requests[tuple[bool, str | SecretError]] = ipc.Requests()

    async def get(self, namespace: str, ref: SecretRef) -> str:
        number, answered = self.requests.open()
        self._send((ipc.SECRET, number, namespace, ref))
        ok, value = await answered
        if isinstance(value, SecretError):
            raise value
        if not ok:
            raise SecretError(str(value))
        return str(value)


class _Child:
    def __init__(
        self,
        control: ipc.Pipe,
        connections: socket.socket,
        hls_root: Path,
        sources: SourcePolicy,
        rtmp_limits: Limits,
        recording_spool: Path | None = None,
    ) -> None:
        self._control = control
        self._connections = connections
        self._secrets = _ParentSecrets(self._send)
        self._engine = Engine(
            hls_root, self._secrets, sources=sources, recording_spool=recording_spool
        )
        self._rtmp = RtmpServer(self._engine.authorize_publish, limits=rtmp_limits)
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()

    def _send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self._control.send(message)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._rtmp.start_unbound()
        self._engine.on_change(lambda status: self._send((ipc.STATUS, status)))
        loop.add_reader(self._control.fileno(), self._on_control)
        self._connections.setblocking(False)
        loop.add_reader(self._connections.fileno(), self._on_connection)
        snapshots = asyncio.create_task(self._snapshots())
        await self._done.wait()
        snapshots.cancel()
        await self._rtmp.close()

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            self._send((ipc.SNAPSHOT, self._engine.statuses()))
            self._send((ipc.RTMP, self._rtmp.stats()))

    def _on_control(self) -> None:
        try:
            message = self._control.recv()
        except (EOFError, OSError):
            self._done.set()  # the parent is gone: nothing left to serve for
            return
        verb = message[0]
        if verb == ipc.APPLY:
            _, number, specs, sequences = message
            self._spawn(self._apply(number, specs, sequences))
        elif verb == ipc.CLOSE:
            self._spawn(self._close(message[1]))
        elif verb == ipc.FENCE:
            _, number, key = message
            self._send((ipc.FENCED, number, self._engine.fence(key)))
        elif verb == ipc.FOLLOW:
            _, number, key, answers = message
            self._spawn(self._follow_on(number, key, answers))
        elif verb == ipc.NOTE:
            _, key, reason, text = message
            self._engine.note(key, reason, text)
        elif verb == ipc.SECRET:
            _, number, ok, value = message
            self._secrets.requests.answer(number, (ok, value))

    async def _apply(self, number: int, specs: Any, sequences: Any) -> None:
        await self._engine.apply(specs, start_sequences=sequences)
        self._send((ipc.SNAPSHOT, self._engine.statuses()))
        self._send((ipc.DONE, number))

    async def _follow_on(self, number: int, key: Any, answers: Any) -> None:
        try:
            await self._engine.follow_on(key, answers)
        finally:
            self._send((ipc.DONE, number))

    async def _close(self, number: int) -> None:
        await self._engine.close()
        self._send((ipc.SNAPSHOT, self._engine.statuses()))
        self._send((ipc.DONE, number))
        self._done.set()

    def _on_connection(self) -> None:
        try:
            passed = ipc.receive_connection(self._connections)
        except (BlockingIOError, InterruptedError):
            return
        except ipc.DescriptorLost:
            # Out of descriptors: the client is gone (the kernel closed it); the
            # listener's cap (sized from the limit) keeps this rare.
            self._rtmp.refusals.refuse("capacity", "rtmp ?", "a handed-over connection was lost")
            return
        if passed is None:
            self._done.set()  # the parent closed its end
            return
        if isinstance(passed, ipc.SrtPublisher):
            self._engine.adopt_publisher(passed.key, passed.peer, passed.sock)
            return
        age = max(0.0, time.monotonic() - passed.connected_at)
        self._spawn(self._rtmp.adopt(passed.sock, passed.received, age=age))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
