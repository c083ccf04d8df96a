"""One engine process of a sharded worker (see shards.py for the whole picture).

Who calls this: multiprocessing, in a fresh interpreter (spawn), with a control
pipe to the parent and a Unix socket on which the parent hands over RTMP
connections. The child runs an `Engine` for its share of the streams and an
RTMP server with no listening socket of its own; it reports status changes at
once and a snapshot of every stream's counters each second.

Protocol on the control pipe (tuples, pickled):
    parent → child: ("apply", n, specs, start_sequences) | ("close", n) | ("secret", n, ok, value)
    child → parent: ("done", n) | ("status", StreamStatus) | ("snapshot", [StreamStatus])
                    | ("secret", n, namespace, SecretRef) | ("rtmp", {counter: value})
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing.connection
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from camstream.spec import SecretRef
from camstream_worker.engine import Engine
from camstream_worker.errors import SecretError
from camstream_worker.ingest.rtmp_server import RtmpServer

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 1.0


def main(
    index: int,
    hls_root: str,
    control: multiprocessing.connection.Connection,
    handoff: socket.socket,
    log_level: int,
) -> None:
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[engine-{index}]: %(message)s",
    )
    # The parent decides when children stop; Ctrl-C in a terminal reaches the
    # whole process group, and the child must not die before handing off.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_Child(control, handoff, Path(hls_root)).run())


class _ParentSecrets:
    """SecretResolver that asks the parent process."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._numbers = itertools.count()
        self.waiting: dict[int, asyncio.Future[tuple[bool, str]]] = {}

    async def get(self, namespace: str, ref: SecretRef) -> str:
        number = next(self._numbers)
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        self._send(("secret", number, namespace, ref))
        ok, value = await future
        if not ok:
            raise SecretError(value)
        return value


class _Child:
    def __init__(
        self,
        control: multiprocessing.connection.Connection,
        handoff: socket.socket,
        hls_root: Path,
    ) -> None:
        self._control = control
        self._handoff = handoff
        self._secrets = _ParentSecrets(self._send)
        self._engine = Engine(hls_root, self._secrets)
        self._rtmp = RtmpServer(self._engine.authorize_publish)
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()

    def _send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self._control.send(message)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._rtmp.start_unbound()
        self._engine.on_change(lambda status: self._send(("status", status)))
        loop.add_reader(self._control.fileno(), self._on_control)
        self._handoff.setblocking(False)
        loop.add_reader(self._handoff.fileno(), self._on_handoff)
        snapshots = asyncio.create_task(self._snapshots())
        await self._done.wait()
        snapshots.cancel()
        await self._rtmp.close()

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            self._send(("snapshot", self._engine.statuses()))
            self._send(("rtmp", self._rtmp.stats()))

    def _on_control(self) -> None:
        try:
            message = self._control.recv()
        except (EOFError, OSError):
            self._done.set()  # the parent is gone: nothing left to serve for
            return
        verb = message[0]
        if verb == "apply":
            _, number, specs, sequences = message
            self._spawn(self._apply(number, specs, sequences))
        elif verb == "close":
            self._spawn(self._close(message[1]))
        elif verb == "secret":
            _, number, ok, value = message
            future = self._secrets.waiting.pop(number, None)
            if future is not None and not future.done():
                future.set_result((ok, value))

    async def _apply(self, number: int, specs: Any, sequences: Any) -> None:
        await self._engine.apply(specs, start_sequences=sequences)
        self._send(("snapshot", self._engine.statuses()))
        self._send(("done", number))

    async def _close(self, number: int) -> None:
        await self._engine.close()
        self._send(("snapshot", self._engine.statuses()))
        self._send(("done", number))
        self._done.set()

    def _on_handoff(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self._handoff, 1 << 17, 1)
        except (BlockingIOError, InterruptedError):
            return
        if not fds:
            self._done.set()  # the parent closed its end
            return
        connection = socket.socket(fileno=fds[0])
        connection.setblocking(False)
        self._spawn(self._rtmp.adopt(connection, data))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
