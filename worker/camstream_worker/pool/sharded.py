"""A worker that uses every core: the engine split over engine processes.

Who calls this: standalone and cluster mode, through the same interface as
`Engine` (apply, statuses, status, on_change; RTMP comes through the front,
servers/rtmp/front.py, which this pool serves as its Router). Python threads
contend for one GIL, so one process tops out near one core; here each engine
process (process.py, child.py) runs an `Engine` for the streams that hash to
it, and this parent keeps what must be shared:

- the desired set, split by `shard_of(key)`, re-sent to a process that crashed
  and was restarted;
- the merged view of every stream's status (processes report changes as they
  happen and a snapshot of their counters every second);
- Secrets: processes ask the parent, which holds the resolver (Kubernetes
  client or the manifests), so credentials stay resolved in one place;
- the one public RTMP port: the front hands each connection to the process
  that owns its stream.

Processes write HLS under the shared root, so the HTTP server in the parent
serves every stream's files directly.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from camstream.spec import (
    RecordingDefaults,
    SecretRef,
    StreamKey,
    StreamSpec,
    with_recording_default,
)
from camstream_worker.errors import SecretError
from camstream_worker.metrics.worker import add_stats
from camstream_worker.outputs.hls.sequence import Fenced, SequenceStart
from camstream_worker.pool.process import EngineProcess
from camstream_worker.protocols.rtmp import paths
from camstream_worker.protocols.rtmp.names import redact_app
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.servers.rtmp.front import RtmpFront, RtmpOwner
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.sources.policy import SourcePolicy
from camstream_worker.state import Phase, StreamStatus

log = logging.getLogger(__name__)


def shard_of(key: StreamKey, shards: int) -> int:
    """The process that runs a stream: a stable hash (never Python's hash())."""
    return zlib.crc32(str(key).encode()) % shards


class ShardedEngine:
    def __init__(
        self,
        hls_root: Path,
        secrets: SecretResolver,
        processes: int,
        *,
        sources: SourcePolicy | None = None,
        rtmp_limits: Limits | None = None,
        recording_spool: Path | None = None,
        recording_defaults: RecordingDefaults | None = None,
    ) -> None:
        """`sources`: where pulled sources may go (each engine process gets a copy);
        `rtmp_limits`: for the front and every engine process's listener."""
        self.hls_root = hls_root
        self._secrets = secrets
        self._rtmp_limits = rtmp_limits or Limits()
        self._recording_defaults = recording_defaults or RecordingDefaults()
        self._engines = [
            EngineProcess(
                index,
                hls_root,
                sources=sources or SourcePolicy(),
                rtmp_limits=self._rtmp_limits,
                recording_spool=recording_spool,
                on_status=self._reported,
                resolve_secret=self._resolve,
                closing=lambda: self._closing,
            )
            for index in range(processes)
        ]
        self._statuses: dict[StreamKey, StreamStatus] = {}
        self._listeners: list[Callable[[StreamStatus], None]] = []
        self._desired: dict[StreamKey, StreamSpec] = {}
        self._closing = False

    @property
    def processes(self) -> int:
        return len(self._engines)

    async def start(self) -> None:
        await asyncio.gather(*(engine.start() for engine in self._engines))

    # -- Engine interface

    def statuses(self) -> list[StreamStatus]:
        return [self._status_of(key, spec) for key, spec in self._desired.items()]

    def status(self, key: StreamKey) -> StreamStatus | None:
        spec = self._desired.get(key)
        return None if spec is None else self._status_of(key, spec)

    def spec(self, key: StreamKey) -> StreamSpec | None:
        """The latest spec applied for `key` (the HTTP server reads its playback policy)."""
        return self._desired.get(key)

    def specs(self) -> Mapping[StreamKey, StreamSpec]:
        """Every spec applied (the SRT service reads which streams take publishers)."""
        return self._desired

    def _status_of(self, key: StreamKey, spec: StreamSpec) -> StreamStatus:
        known = self._statuses.get(key)
        if known is not None:
            return known
        # Its process has not reported yet (just applied, or restarting after a crash).
        return StreamStatus(key=key, protocol=spec.source.protocol, phase=Phase.PENDING)

    def on_change(self, callback: Callable[[StreamStatus], None]) -> None:
        self._listeners.append(callback)

    async def apply(
        self,
        desired: Mapping[StreamKey, StreamSpec],
        *,
        start_sequences: Mapping[StreamKey, SequenceStart] | None = None,
    ) -> None:
        # The site's recording default is filled in here, once for every process.
        desired = {
            k: with_recording_default(s, self._recording_defaults) for k, s in desired.items()
        }
        self._desired = dict(desired)
        sequences = dict(start_sequences or {})
        shares: list[dict[StreamKey, StreamSpec]] = [{} for _ in self._engines]
        for key, spec in desired.items():
            shares[shard_of(key, len(self._engines))][key] = spec
        await asyncio.gather(
            *(
                engine.apply(share, {k: sequences[k] for k in share if k in sequences})
                for engine, share in zip(self._engines, shares, strict=True)
            )
        )
        for key in list(self._statuses):
            if key not in desired:
                del self._statuses[key]

    # -- a handoff's fence (engine.py, outputs/hls/writer.py)

    async def fence(self, key: StreamKey) -> Fenced | None:
        """Stop stream `key` publishing here: each writer's last number and cut time."""
        return await self._engines[shard_of(key, len(self._engines))].fence(key)

    async def follow_on(self, key: StreamKey, answers: Fenced | None) -> None:
        """Publish stream `key`, following on the old owner's `answers` (None: provisionally)."""
        await self._engines[shard_of(key, len(self._engines))].follow_on(key, answers)

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(engine.close() for engine in self._engines))

    # -- RTMP: this pool is the front's Router

    async def serve_rtmp(
        self,
        host: str,
        port: int,
        *,
        owner: RtmpOwner | None = None,
        is_mine: Callable[[StreamKey], bool] | None = None,
    ) -> RtmpFront:
        front = RtmpFront(self, host, port, owner=owner, is_mine=is_mine, limits=self._rtmp_limits)
        await front.start()
        return front

    def rtmp_stats(self, front: RtmpFront | None = None) -> dict[str, int]:
        """RTMP counters of every engine process (and of the front), added up."""
        parts = [engine.rtmp_stats for engine in self._engines]
        return add_stats(*parts, *([front.stats()] if front is not None else []))

    def hand_over(
        self, app: str, sock: socket.socket, received: bytes, connected_at: float
    ) -> None:
        key = paths.stream_of_app(app)
        if key is not None:
            engine = self._engines[shard_of(key, len(self._engines))]
        else:
            # rtmp://host/<namespace>/<name>?key=… gives only the namespace here:
            # such publishers can reach only the streams of the first process.
            log.info(
                "rtmp: app %r names no stream; publish to /<namespace>/<name>/<key>",
                redact_app(app),
            )
            engine = self._engines[0]
        engine.hand_over(sock, received, connected_at)

    # -- SRT: the listener (servers/srt/) delivers publishers to the stream's process

    def adopt_publisher(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        try:
            self._engines[shard_of(key, len(self._engines))].pass_publisher(sock, key, peer)
        finally:
            sock.close()  # the engine process has its own copy of the descriptor now

    def note(self, key: StreamKey, reason: str, message: str) -> None:
        self._engines[shard_of(key, len(self._engines))].note(key, reason, message)

    # -- from the engine processes

    def _reported(self, status: StreamStatus, changed: bool) -> None:
        if status.key not in self._desired:
            return
        self._statuses[status.key] = status
        if changed:
            for listener in self._listeners:
                try:
                    listener(status)
                except Exception:
                    log.exception("status listener failed")

    async def _resolve(self, namespace: str, ref: SecretRef) -> tuple[bool, str | SecretError]:
        try:
            return True, await self._secrets.get(namespace, ref)
        except SecretError as exc:
            return False, exc  # the class travels too: SecretNotAllowed is not SecretMissing
