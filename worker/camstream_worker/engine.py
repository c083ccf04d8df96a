"""The worker engine: the set of streams this process runs, matched to a desired set.

Who calls this: standalone mode (camstream run/demo) hands it every stream of
its manifests; cluster mode hands it the streams of the partitions this worker
owns. Both call `apply` with the whole desired set; the engine starts what is
new, stops what is gone (removing its files) and restarts what changed,
continuing the HLS media sequence so players see one stream with a
discontinuity.

At a handoff it fences and follows on (outputs/hls/writer.py, "The fence"):
a stream started ahead of a previous owner (`SequenceStart.ahead_of`) numbers
provisionally until `follow_on`; `fence` stops a stream here from publishing
and says where it ended. A stream handed away is usually stopped here (the
ring flipped) before its new owner asks, so what its writers said when it
was stopped is kept a while (FENCE_MEMORY_SECONDS) and answered instead.

It also answers the RTMP listener: a publisher is routed by its path
(`/<namespace>/<name>/<key>`, see protocols/rtmp/paths.py) to its stream,
whose source checks the key if it takes publishers at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from camstream.spec import RecordingDefaults, StreamKey, StreamSpec, with_recording_default
from camstream_worker.fence_memory import FenceMemory
from camstream_worker.outputs.hls.sequence import Fenced, SequenceStart
from camstream_worker.protocols.rtmp import paths
from camstream_worker.protocols.rtmp.publish import PublishSink
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.sources.base import PushedSource, SocketFedSource
from camstream_worker.sources.egress import Egress
from camstream_worker.sources.policy import SourcePolicy
from camstream_worker.state import StreamStatus
from camstream_worker.stream import Stream

log = logging.getLogger(__name__)

# How long a stopped stream's last numbers are kept for its new owner's fence
# (which comes within FENCE_SECONDS of the ring's flip, cluster/fencing.py),
# and at most how many (a whole process's streams handed away at once).
FENCE_MEMORY_SECONDS = 30.0
FENCE_MEMORY_STREAMS = 10_000
# The kept segments' bytes (sequence.TAIL_SEGMENTS of each stream, for its new
# owner to list) are the costly part: at most this many bytes in all, the
# oldest stream's dropped first (its new owner then follows on without them,
# as before tails), and none kept past FENCE_TAIL_SECONDS (twice FENCE_SECONDS).
FENCE_MEMORY_TAIL_BYTES = 256 * 1024 * 1024
FENCE_TAIL_SECONDS = 4.0


class Engine:
    def __init__(
        self,
        hls_root: Path,
        secrets: SecretResolver,
        *,
        sources: SourcePolicy | None = None,
        recording_spool: Path | None = None,
        recording_defaults: RecordingDefaults | None = None,
    ) -> None:
        """`sources`: where pulled sources may go; the default is a cluster's (no local files).
        `recording_spool`: streams that record write their groups there for
        the worker's uploader (None: nothing is recorded here);
        `recording_defaults`: what streams without spec.recording get (None:
        the specs arrive with it filled in, as the pool's parent sends them)."""
        self.hls_root = hls_root
        self._secrets = secrets
        self._egress = Egress(sources or SourcePolicy())
        self._recording_spool = recording_spool
        self._recording_defaults = recording_defaults
        self._streams: dict[StreamKey, Stream] = {}
        self._specs: dict[StreamKey, StreamSpec] = {}
        self._listeners: list[Callable[[StreamStatus], None]] = []
        # Streams stopped here: what their writers said at the stop.
        self._stopped = FenceMemory(
            seconds=FENCE_MEMORY_SECONDS,
            streams=FENCE_MEMORY_STREAMS,
            tail_bytes=FENCE_MEMORY_TAIL_BYTES,
            tail_seconds=FENCE_TAIL_SECONDS,
        )
        self._lock = asyncio.Lock()
        hls_root.mkdir(parents=True, exist_ok=True)

    # -- read side (StreamDirectory)

    def statuses(self) -> list[StreamStatus]:
        return [stream.status for stream in self._streams.values()]

    def status(self, key: StreamKey) -> StreamStatus | None:
        stream = self._streams.get(key)
        return stream.status if stream is not None else None

    def on_change(self, callback: Callable[[StreamStatus], None]) -> None:
        self._listeners.append(callback)

    def spec(self, key: StreamKey) -> StreamSpec | None:
        """The latest spec applied for `key` (the HTTP server reads its playback
        policy; a change of that alone restarts nothing)."""
        return self._specs.get(key)

    def specs(self) -> Mapping[StreamKey, StreamSpec]:
        """Every spec applied (the SRT service reads which streams take publishers)."""
        return self._specs

    # -- desired state

    async def apply(
        self,
        desired: Mapping[StreamKey, StreamSpec],
        *,
        start_sequences: Mapping[StreamKey, SequenceStart] | None = None,
    ) -> None:
        """Run exactly the enabled streams of `desired`."""
        start_sequences = start_sequences or {}
        if self._recording_defaults is not None:
            defaults = self._recording_defaults
            desired = {k: with_recording_default(s, defaults) for k, s in desired.items()}
        self._specs = dict(desired)
        async with self._lock:
            wanted = {key: spec for key, spec in desired.items() if spec.enabled}
            stale = [
                key
                for key, stream in self._streams.items()
                if key not in wanted or _differs(stream.spec, wanted[key])
            ]
            continued: dict[StreamKey, tuple[SequenceStart, bool]] = {}
            for key in stale:
                stream = self._streams.pop(key)
                if key not in wanted:
                    # Fenced before it stops (stopping takes a while, and a stream
                    # being stopped is in neither table): a removed stream's unfinished
                    # segment is dropped anyway, so its last published one is final.
                    now = time.monotonic()
                    fenced = stream.fence(self._stopped.tail_room(now))
                    self._stopped.remember(key, fenced, now)
                await stream.stop(remove=key not in wanted)
                if key in wanted:
                    # A restart, not a removal: still waiting for the fence if it was.
                    continued[key] = stream.continuation(), stream.awaiting_fence
                else:
                    self._notify(stream.status)
            for key, spec in wanted.items():
                if key in self._streams:
                    continue
                if key in continued:
                    start, awaiting = continued[key]
                    self._start(spec, start, discontinuity=True, await_fence=awaiting)
                elif key in start_sequences:
                    start = start_sequences[key]
                    # Ahead of an owner still writing: a handoff, fenced (see above).
                    awaiting = start.ahead_of is not None
                    self._start(spec, start, discontinuity=True, await_fence=awaiting)
                else:
                    self._start(spec, SequenceStart(0), discontinuity=False)

    async def close(self) -> None:
        """Stop every stream, keeping their files (a worker shutting down)."""
        async with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
            await asyncio.gather(*(stream.stop() for stream in streams))
            await self._egress.close()

    # -- the fence at a handoff

    def fence(self, key: StreamKey) -> Fenced | None:
        """Stop stream `key` publishing here (its new owner continues): each writer's
        last number and the wall time it was cut; None if the stream is unknown here.
        The caller has checked that this worker no longer serves it."""
        stream = self._streams.get(key)
        if stream is not None:
            return stream.fence()
        return self._stopped.said(key, time.monotonic())

    async def follow_on(self, key: StreamKey, answers: Fenced | None) -> None:
        """Publish stream `key` following the old owner's `answers` (None: provisionally)."""
        stream = self._streams.get(key)
        if stream is not None and stream.awaiting_fence:
            await asyncio.to_thread(stream.follow_on, answers)

    def _start(
        self,
        spec: StreamSpec,
        start: SequenceStart,
        *,
        discontinuity: bool,
        await_fence: bool = False,
    ) -> None:
        self._stopped.forget(key := spec.key)
        stream = Stream(
            spec,
            hls_root=self.hls_root,
            secrets=self._secrets,
            egress=self._egress,
            start=start,
            discontinuity=discontinuity,
            on_change=self._notify,
            recording_spool=self._recording_spool,
            await_fence=await_fence,
        )
        self._streams[key] = stream
        stream.start()

    # -- RTMP routing

    async def authorize_publish(self, app: str, stream_name: str, peer: str) -> PublishSink | None:
        """The RTMP listener's Authorizer: a PublishSink, or None to reject."""
        target = paths.publish_target(app, stream_name)
        if target is None:
            log.info("rtmp publish from %s rejected: path is not /<namespace>/<name>", peer)
            return None
        key, offered = target
        stream = self._streams.get(key)
        source = stream.source if stream is not None else None
        if not isinstance(source, PushedSource):
            log.info("rtmp publish from %s rejected: %s is not an rtmp stream here", peer, key)
            return None
        return await source.admit(offered, peer)

    # -- SRT: the listener (servers/srt/listener.py) delivers accepted publishers

    def adopt_publisher(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        """A publisher the SRT listener accepted for `key`: its stream's source takes it."""
        stream = self._streams.get(key)
        source = stream.source if stream is not None else None
        if not isinstance(source, SocketFedSource):
            log.info("srt publisher %s dropped: %s is not an srt stream here", peer, key)
            sock.close()
            return
        source.admit_socket(sock, peer)

    def note(self, key: StreamKey, reason: str, message: str) -> None:
        """Show on a waiting stream why a publisher was refused (secret-free `message`)."""
        stream = self._streams.get(key)
        if stream is not None:
            stream.note(reason, message)

    def _notify(self, status: StreamStatus) -> None:
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("status listener failed")


def _differs(old: StreamSpec, new: StreamSpec) -> bool:
    """A change that needs a restart (the generation alone does not)."""
    return (old.source, old.hls, old.transcode, old.thumbnail, old.recording) != (
        new.source,
        new.hls,
        new.transcode,
        new.thumbnail,
        new.recording,
    )
