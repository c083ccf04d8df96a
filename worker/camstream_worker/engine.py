"""The worker engine: the set of streams this process runs, matched to a desired set.

Who calls this: standalone mode (camstream run/demo) hands it every stream of
its manifests; cluster mode hands it the streams of the partitions this worker
owns. Both call `apply` with the whole desired set; the engine starts what is
new, stops what is gone (removing its files) and restarts what changed,
continuing the HLS media sequence so players see one stream with a
discontinuity.

It also answers the RTMP listener: a publisher is routed by its path
(`/<namespace>/<name>/<key>`, see protocols/rtmp/paths.py) to its stream,
whose source checks the key if it takes publishers at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from camstream.spec import StreamKey, StreamSpec
from camstream_worker.outputs.hls.sequence import FirstNumber, SequenceStart
from camstream_worker.outputs.hls.writer import HlsWriter, SegmentWritten
from camstream_worker.outputs.thumbnail import Thumbnailer
from camstream_worker.outputs.transcode import SOURCE_FOLDER, Transcoder
from camstream_worker.protocols.rtmp import paths
from camstream_worker.protocols.rtmp.publish import PublishSink
from camstream_worker.secrets import SecretResolver
from camstream_worker.sources import kinds
from camstream_worker.sources.base import Context, PushedSource
from camstream_worker.state import StreamStatus, stream_dir
from camstream_worker.supervisor import StreamRunner

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, hls_root: Path, secrets: SecretResolver) -> None:
        self.hls_root = hls_root
        self._secrets = secrets
        self._runners: dict[StreamKey, StreamRunner] = {}
        self._listeners: list[Callable[[StreamStatus], None]] = []
        self._lock = asyncio.Lock()
        hls_root.mkdir(parents=True, exist_ok=True)

    # -- read side (StreamDirectory)

    def statuses(self) -> list[StreamStatus]:
        return [runner.status for runner in self._runners.values()]

    def status(self, key: StreamKey) -> StreamStatus | None:
        runner = self._runners.get(key)
        return runner.status if runner is not None else None

    def on_change(self, callback: Callable[[StreamStatus], None]) -> None:
        self._listeners.append(callback)

    # -- desired state

    async def apply(
        self,
        desired: Mapping[StreamKey, StreamSpec],
        *,
        start_sequences: Mapping[StreamKey, SequenceStart] | None = None,
    ) -> None:
        """Run exactly the enabled streams of `desired`."""
        start_sequences = start_sequences or {}
        async with self._lock:
            wanted = {key: spec for key, spec in desired.items() if spec.enabled}
            stale = [
                key
                for key, runner in self._runners.items()
                if key not in wanted or _differs(runner.spec, wanted[key])
            ]
            continued: dict[StreamKey, SequenceStart] = {}
            for key in stale:
                runner = self._runners.pop(key)
                await runner.stop(keep_last=key in wanted)
                if key in wanted:
                    continued[key] = runner.writer.continuation()  # a restart, not a removal
                else:
                    _remove_stream_files(runner, self.hls_root / stream_dir(key))
                    self._notify(runner.status)
            for key, spec in wanted.items():
                if key in self._runners:
                    continue
                if key in continued:
                    self._start(spec, continued[key], discontinuity=True)
                elif key in start_sequences:
                    self._start(spec, start_sequences[key], discontinuity=True)
                else:
                    self._start(spec, SequenceStart(0), discontinuity=False)

    async def close(self) -> None:
        """Stop every stream, keeping their files (a worker shutting down)."""
        async with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
            await asyncio.gather(*(runner.stop() for runner in runners))

    def _start(self, spec: StreamSpec, start: SequenceStart, *, discontinuity: bool) -> None:
        key = spec.key
        runner_box: list[StreamRunner] = []

        def segment_from_any_thread(segment: SegmentWritten) -> None:
            loop.call_soon_threadsafe(runner_box[0].segment_written, segment)

        loop = asyncio.get_running_loop()
        folder = self.hls_root / stream_dir(key)
        transcoder = None
        sequence = FirstNumber(start)  # one for all the stream's writers
        if spec.transcode.enabled:
            transcoder = Transcoder(
                folder,
                spec.transcode.renditions,
                spec.hls,
                start_sequence=sequence,
                log_prefix=f"[{key}] ",
            )
            folder = folder / SOURCE_FOLDER  # the passthrough copy is one variant of several
        writer = HlsWriter(
            folder,
            spec.hls,
            start_sequence=sequence,
            discontinuity_on_first=discontinuity,
            on_segment=segment_from_any_thread,
        )
        context = Context(
            secrets=self._secrets,
            log_prefix=f"[{key}] ",
            note=lambda reason, message: runner_box[0].note(reason, message),
        )
        runner = StreamRunner(
            spec,
            writer,
            kinds.make_source(spec, context),
            on_change=self._notify,
            transcoder=transcoder,
            thumbnailer=Thumbnailer(
                self.hls_root / stream_dir(key),
                spec.thumbnail.interval_seconds,
                log_prefix=f"[{key}] ",
            )
            if spec.thumbnail.enabled
            else None,
        )
        runner_box.append(runner)
        self._runners[key] = runner
        runner.start()

    # -- RTMP routing

    async def authorize_publish(self, app: str, stream_name: str, peer: str) -> PublishSink | None:
        """The RTMP listener's Authorizer: a PublishSink, or None to reject."""
        target = paths.publish_target(app, stream_name)
        if target is None:
            log.info("rtmp publish from %s rejected: path is not /<namespace>/<name>", peer)
            return None
        key, offered = target
        runner = self._runners.get(key)
        source = runner.source if runner is not None else None
        if not isinstance(source, PushedSource):
            log.info("rtmp publish from %s rejected: %s is not an rtmp stream here", peer, key)
            return None
        return await source.admit(offered, peer)

    def _notify(self, status: StreamStatus) -> None:
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("status listener failed")


def _differs(old: StreamSpec, new: StreamSpec) -> bool:
    """A change that needs a restart (the generation alone does not)."""
    return (old.source, old.hls, old.transcode, old.thumbnail) != (
        new.source,
        new.hls,
        new.transcode,
        new.thumbnail,
    )


def _remove_stream_files(runner: StreamRunner, folder: Path) -> None:
    """A deleted stream leaves nothing behind: segments, playlists, stills."""
    runner.writer.remove_files()
    if runner.transcoder is not None:
        runner.transcoder.remove_files()
    for leftover in folder.glob("*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
