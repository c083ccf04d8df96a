"""Bench-only prototype: the SRT edge with a plain TCP leg to the worker (#15, item 4).

Who calls this: bench/edge_bench.py with `--protocol srt --worker-leg tcp`,
nothing else. The production relay (camstream_worker/edge/srt_relay.py) is
untouched: these classes subclass it in the bench.

The question it answers: what the edge costs per camera with ONE libsrt
connection per camera (the camera's, terminated at the edge as now) instead
of two (today's second is an SRT caller to the worker, re-encrypting). Here
the relayed MPEG-TS goes to the "worker" over TCP, written once per read
batch as the RTMP edge writes to its workers (upstream.py), bounded like
`MAX_BUFFER`:

    camera ──SRT──▶ edge: SrtListener ──Unix socket──▶ _Relay
        └─ whole TS packets, from the first PAT ─▶ TCP ──▶ sink (this file)

The first line on each TCP connection names the stream ("default/cam3\\n");
no token, no refusal, no handoff test: a worker would need all of that (an
edge proof, as on the RTMP leg) before this could be a product. The sink
counts bytes per stream and writes the counts to a file on tmpfs once a
second, so the bench can tell which streams flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

from camstream_worker.edge.srt_relay import (
    MAX_BUFFER,
    OPEN_TIMEOUT,
    SrtRelay,
    _Feed,
    _Relay,
)

# The connection's kernel send buffer: 0.1 s of a 1 Mbit/s camera is 12.5 KB,
# so a read batch always fits; Linux's default autotunes far higher.
SEND_BUFFER = 64 * 1024


@dataclass(slots=True)
class _TcpFeed(_Feed):
    """One TCP connection from the edge to a worker, for one camera (`sock` unused: -1)."""

    key: str = ""
    transport: asyncio.Transport | None = None
    connecting: asyncio.Task[None] | None = None
    broken: str | None = None

    def flush(self) -> None:
        """Write the queued packets in one call, unless the worker lags by MAX_BUFFER.

        Over that, the queue stays and grows until `push` drops it and starts
        again at a PAT, as `_Feed` does: at most twice MAX_BUFFER per worker."""
        transport = self.transport
        if not self.connected or transport is None or not self.queue:
            return
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_BUFFER:
            return
        data = bytes(self.queue)
        self.queue.clear()
        transport.write(data)  # asyncio sends at once; the rest waits in its buffer
        self.sent += len(data)

    async def connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            transport, _ = await loop.create_connection(lambda: _Upstream(self), *self.address)
        except OSError as exc:
            self.broken = f"connect failed: {exc}"
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        assert isinstance(transport, asyncio.Transport)
        transport.write(f"{self.key}\n".encode())
        self.transport = transport
        self.connected = True
        self.flush()

    def close(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.close()


class _Upstream(asyncio.Protocol):
    """The worker's end: nothing comes back but its close."""

    def __init__(self, feed: _TcpFeed) -> None:
        self._feed = feed

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._feed.broken = f"the worker closed ({exc})" if exc else "the worker closed"


class _TcpRelay(_Relay):
    """`_Relay` with `_TcpFeed`s: the same reads and pushes, another leg."""

    def _tend(self, worker: str, feed: _Feed, now: float) -> None:
        assert isinstance(feed, _TcpFeed)
        if feed.broken is not None:
            self._lost(worker, feed.broken)
        elif feed.connected:
            before = feed.sent
            feed.flush()
            self._host.edge.metrics.bytes_out.inc(feed.sent - before)
        elif now - feed.opened > OPEN_TIMEOUT:
            self._lost(worker, f"no answer in {OPEN_TIMEOUT:g} s")

    def _open(self, worker: str, address: tuple[str, int], now: float, *, handoff: bool) -> None:
        feed = _TcpFeed(worker, address, -1, now, key=str(self.key))
        loop = asyncio.get_running_loop()
        feed.connecting = loop.create_task(feed.connect(loop), name=f"tcp leg {self.key}")
        self.feeds[worker] = feed

    def _close(self, worker: str) -> None:
        feed = self.feeds.pop(worker, None)
        if isinstance(feed, _TcpFeed):
            feed.close()


class TcpLegRelay(SrtRelay):
    """`SrtRelay` whose publishers are relayed by `_TcpRelay` (`worker_srt_port`: the sink's)."""

    relay_class = _TcpRelay


# -- the bench's worker for this mode ------------------------------------------


class _Counter(asyncio.Protocol):
    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts
        self._key: str | None = None
        self._head = b""

    def data_received(self, data: bytes) -> None:
        if self._key is None:
            self._head += data
            line, found, rest = self._head.partition(b"\n")
            if not found:
                return
            self._key = line.decode(errors="replace")
            self._counts.setdefault(self._key, 0)
            data = rest
        self._counts[self._key] += len(data)


async def serve_sink(port: int, stats: Path) -> int:
    """Accept the edge's TCP legs on 127.0.0.1:`port`; write "key bytes" lines to `stats`."""
    counts: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Counter(counts), "127.0.0.1", port, backlog=1024)
    try:
        while True:
            _write(stats, "".join(f"{key} {n}\n" for key, n in counts.items()))
            await asyncio.sleep(1.0)
    finally:
        server.close()
        _write(stats, None)


def _write(path: Path, text: str | None) -> None:
    """A tiny file on tmpfs (no await worth it); None removes it."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


def read_counts(stats: Path) -> dict[str, int]:
    """The sink's bytes per stream ({} before it wrote any)."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in stats.read_text().splitlines():
            key, _, n = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                counts[key] = int(n)
    return counts
