"""The parent's handle of one engine process: start it, feed it, restart it when it dies.

Who calls this: the pool (sharded.py) keeps one `EngineProcess` per core. It
holds the process's share of the streams so that a process that died (a
segfault in FFmpeg stops only its own streams, briefly) is restarted with
them; it answers the process's Secret requests through the pool, and passes
the process the RTMP connections that are for its streams. The channels are
ipc.py's; the process's own side is child.py.

The process is a fresh interpreter started by asyncio (`python -m
camstream_worker.pool.child`), not multiprocessing's spawn: spawn also
starts multiprocessing's resource tracker, a third process of ~7 MB that
tracks named semaphores and shared memory, of which the pool has none. The
child inherits its two channel ends and nothing else, and this module does
not import the engine: the parent (the front) never loads PyAV for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from camstream.spec import SecretRef, StreamKey, StreamSpec
from camstream_worker.errors import SecretError
from camstream_worker.outputs.hls.sequence import Fenced, SequenceStart
from camstream_worker.pool import ipc
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.sources.policy import SourcePolicy
from camstream_worker.state import StreamStatus

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
CHILD_MODULE = "camstream_worker.pool.child"

# (status, changed): changed=False for the periodic snapshots of counters.
OnStatus = Callable[[StreamStatus, bool], None]
# (namespace, ref) -> (found, the value or the SecretError saying why not)
ResolveSecret = Callable[[str, SecretRef], Awaitable[tuple[bool, "str | SecretError"]]]


class EngineProcess:
    def __init__(
        self,
        index: int,
        hls_root: Path,
        *,
        sources: SourcePolicy,
        rtmp_limits: Limits,
        recording_spool: Path | None = None,
        on_status: OnStatus,
        resolve_secret: ResolveSecret,
        closing: Callable[[], bool],
    ) -> None:
        """`closing`: the pool is shutting down, so a process that exits stays down."""
        self.index = index
        self._hls_root = hls_root
        self._sources = sources
        self._rtmp_limits = rtmp_limits
        self._recording_spool = recording_spool
        self._on_status = on_status
        self._resolve_secret = resolve_secret
        self._closing = closing
        self._process: asyncio.subprocess.Process | None = None
        self._control: ipc.Pipe | None = None
        self._connections: socket.socket | None = None
        self._share: dict[StreamKey, StreamSpec] = {}
        self._sequences: dict[StreamKey, SequenceStart] = {}
        self._requests: ipc.Requests[None] = ipc.Requests()
        self._fences: ipc.Requests[Fenced | None] = ipc.Requests()
        self._tasks: set[asyncio.Future[None]] = set()
        self.rtmp_stats: dict[str, int] = {}

    async def start(self) -> None:
        (control, connections), (child_control, child_connections) = ipc.channels()
        descriptors = (child_control.fileno(), child_connections.fileno())
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                CHILD_MODULE,
                *map(str, descriptors),
                pass_fds=descriptors,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            control.close()
            connections.close()
            raise
        finally:
            child_control.close()
            child_connections.close()
        control.send(
            ipc.Settings(
                index=self.index,
                hls_root=str(self._hls_root),
                log_level=logging.getLogger().level,
                sources=self._sources,
                rtmp_limits=self._rtmp_limits,
                recording_spool=(
                    str(self._recording_spool) if self._recording_spool is not None else None
                ),
            )
        )
        log.info("engine process %d started (pid %s)", self.index, process.pid)
        self._process, self._control, self._connections = process, control, connections
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_readable)
        if self._share:
            await self.apply(self._share, self._sequences)

    async def apply(
        self, share: dict[StreamKey, StreamSpec], sequences: dict[StreamKey, SequenceStart]
    ) -> None:
        self._share, self._sequences = share, sequences
        await self._request(ipc.APPLY, share, sequences)

    async def close(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._request(ipc.CLOSE), 30)
        # The child's exit may already have detached us (EOF on the pipe).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        self._detach()

    def hand_over(self, sock: socket.socket, received: bytes, connected_at: float) -> None:
        """Give an RTMP connection (after its handshake) to this process."""
        assert self._connections is not None
        ipc.pass_connection(self._connections, sock, received, connected_at)

    def pass_publisher(self, sock: socket.socket, key: StreamKey, peer: str) -> None:
        """Give an accepted SRT publisher's byte socket to this process (then ours is closed)."""
        if self._connections is None:  # restarting: the publisher reconnects
            return
        ipc.pass_publisher(self._connections, sock, key, peer)

    async def fence(self, key: StreamKey) -> Fenced | None:
        """Stop stream `key` publishing (engine.py's `fence`); None: not here."""
        if self._control is None:
            return None  # restarting: its streams are not running
        number, answered = self._fences.open()
        self._control.send((ipc.FENCE, number, key))
        return await answered

    async def follow_on(self, key: StreamKey, answers: Fenced | None) -> None:
        """Publish stream `key` following on `answers` (None: provisionally)."""
        # A restart of this process from now on starts the stream afresh, not ahead of anyone.
        self._sequences.pop(key, None)
        if self._control is not None:
            await self._request(ipc.FOLLOW, key, answers)

    def note(self, key: StreamKey, reason: str, message: str) -> None:
        """A refused SRT publisher of `key`: its status says so (a secret-free message)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send((ipc.NOTE, key, reason, message))

    async def _request(self, verb: str, *args: Any) -> None:
        number, answered = self._requests.open()
        assert self._control is not None
        self._control.send((verb, number, *args))
        await answered

    def _on_readable(self) -> None:
        assert self._control is not None
        try:
            message = self._control.recv()
        except (EOFError, OSError):
            self._on_exit()
            return
        kind = message[0]
        if kind == ipc.STATUS:
            self._on_status(message[1], True)
        elif kind == ipc.SNAPSHOT:
            for status in message[1]:
                self._on_status(status, False)
        elif kind == ipc.RTMP:
            self.rtmp_stats = message[1]
        elif kind == ipc.DONE:
            self._requests.answer(message[1], None)
        elif kind == ipc.FENCED:
            self._fences.answer(message[1], message[2])
        elif kind == ipc.SECRET:
            self._spawn(self._answer_secret(*message[1:]))

    async def _answer_secret(self, number: int, namespace: str, ref: SecretRef) -> None:
        ok, value = await self._resolve_secret(namespace, ref)
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send((ipc.SECRET, number, ok, value))

    def _on_exit(self) -> None:
        code = self._process.returncode if self._process is not None else None
        self._detach()
        self._requests.answer_all(None)
        self._fences.answer_all(None)
        if self._closing():
            return
        log.error(
            "engine process %d died (exit %s); restarting its %d streams",
            self.index,
            code,
            len(self._share),
        )
        asyncio.get_running_loop().call_later(RESTART_DELAY, self._spawn, self.start())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def _detach(self) -> None:
        if self._control is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()
        if self._connections is not None:
            self._connections.close()
        self._control = self._connections = None
        self._process = None  # asyncio's child watcher reaps it when it exits
