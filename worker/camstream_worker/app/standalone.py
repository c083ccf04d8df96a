"""Standalone mode: the worker engine without Kubernetes, fed by manifest files.

Who calls this: `camstream run -f streams.yaml` and `camstream demo` (app/cli.py,
with their typed settings from app/config.py). The YAML files hold
CameraStream manifests (the same schema as the CRD) and, for credentials and
stream keys, `kind: Secret` manifests, exactly what one would `kubectl apply`.
This process owns every stream, so no ring is involved.

A bad manifest is reported with the field it is about and skipped; the other
streams still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from camstream.spec import SpecError, StreamKey, StreamSpec, parse_stream
from camstream.wire import KIND
from camstream_worker.app import config
from camstream_worker.metrics.worker import worker_registry
from camstream_worker.outputs.recording import service as recording
from camstream_worker.outputs.recording.uploader import RecordingCollector, UploadStats
from camstream_worker.pool.sharded import ShardedEngine
from camstream_worker.secrets.static import StaticSecrets
from camstream_worker.servers.http import recordings
from camstream_worker.servers.http.server import bound_port, make_admin_app, make_app, serve
from camstream_worker.servers.rtmp.front import RtmpFront
from camstream_worker.servers.rtmp.limits import raise_fd_limit

if TYPE_CHECKING:
    # Imported where used: with a pool and no SRT port, this process (the
    # front) never loads the engine or an SRT source, nor PyAV through them;
    # the engine processes do. PyAV's private heap is ~7 MB a process.
    from camstream_worker.engine import Engine
    from camstream_worker.servers.rtmp.listener import RtmpServer
    from camstream_worker.servers.srt.hosting import SrtService

log = logging.getLogger(__name__)

# On exit, closed groups are uploaded for at most this long; the rest waits in
# the spool for the next start on the same folder.
UPLOAD_ON_EXIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Manifests:
    streams: dict[StreamKey, StreamSpec]
    secrets: list[Mapping[str, Any]]
    errors: list[str]


def load_manifests(paths: Iterable[Path]) -> Manifests:
    """Read every YAML document of `paths` (files or folders of *.yaml)."""
    streams: dict[StreamKey, StreamSpec] = {}
    secrets: list[Mapping[str, Any]] = []
    errors: list[str] = []
    for path in _yaml_files(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            errors.append(f"{path}: not valid YAML ({exc.__class__.__name__})")
            continue
        for number, doc in enumerate(documents, start=1):
            if not isinstance(doc, dict):
                continue
            where = f"{path} document {number}"
            if doc.get("kind") == "Secret":
                secrets.append(doc)
            elif doc.get("kind") == KIND:
                try:
                    spec = parse_stream(doc, local_files=True)  # confined to the file roots
                except SpecError as exc:
                    errors.append(f"{where}: {exc}")
                    continue
                if spec.key in streams:
                    errors.append(f"{where}: {spec.key} is defined twice; the first one is used")
                    continue
                streams[spec.key] = spec
    return Manifests(streams, secrets, errors)


def _yaml_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


@dataclass
class Standalone:
    """A running standalone worker (HTTP + RTMP + engine)."""

    engine: Engine | ShardedEngine
    rtmp: RtmpServer | RtmpFront
    http: Any
    http_port: int
    recording: recording.Recording
    admin: Any = None  # the admin port's runner, when it has a port of its own
    admin_port: int | None = None
    srt: SrtService | None = None  # with --srt-port

    async def close(self) -> None:
        if self.srt is not None:
            await self.srt.close()
        await self.rtmp.close()
        await self.engine.close()  # recorders close their groups
        await self.recording.close(deadline=time.monotonic() + UPLOAD_ON_EXIT_SECONDS)
        if self.admin is not None:
            await self.admin.cleanup()
        await self.http.cleanup()


async def start_standalone(
    manifests: Manifests, serving: config.Serving, *, secrets_dir: Path | None = None
) -> Standalone:
    raise_fd_limit()  # before anything sizes its caps from it
    secrets = StaticSecrets(manifests.secrets, secrets_dir=secrets_dir)
    hls_dir = serving.hls_dir
    kept = await recording.start(
        hls_dir, default_folder=hls_dir.with_name(f"{hls_dir.name}-recordings")
    )
    engine: Engine | ShardedEngine
    rtmp: RtmpServer | RtmpFront
    rtmp_stats: Callable[[], Mapping[str, int]]
    if serving.processes > 1:
        pool = ShardedEngine(
            serving.hls_dir,
            secrets,
            serving.processes,
            sources=serving.sources,
            rtmp_limits=serving.rtmp,
            recording_spool=kept.engine_spool,
            recording_defaults=kept.defaults,
        )
        await pool.start()
        front = await pool.serve_rtmp(serving.host, serving.rtmp_port)
        engine, rtmp = pool, front
        rtmp_stats = lambda: pool.rtmp_stats(front)  # noqa: E731 - one line reads better here
    else:
        from camstream_worker.engine import Engine
        from camstream_worker.servers.rtmp.listener import RtmpServer

        single = Engine(
            serving.hls_dir,
            secrets,
            sources=serving.sources,
            recording_spool=kept.engine_spool,
            recording_defaults=kept.defaults,
        )
        listener = RtmpServer(
            single.authorize_publish, serving.host, serving.rtmp_port, limits=serving.rtmp
        )
        await listener.start()
        engine, rtmp, rtmp_stats = single, listener, listener.stats
    await engine.apply(manifests.streams)
    srt = None
    if serving.srt_port is not None:
        from camstream_worker.servers.srt.hosting import SrtService

        srt = await SrtService.start(
            serving.host, serving.srt_port, engine, secrets, limits=serving.srt
        )
    registry = worker_registry(rtmp_stats, srt_stats=srt.stats if srt is not None else None)
    # Exported with recording off too (all zero), so dashboards and alerts see one shape.
    stats = kept.uploader.stats if kept.uploader is not None else UploadStats()
    registry.register(RecordingCollector(stats))
    app = make_app(
        engine,
        serving.hls_dir,
        worker_name="standalone",
        registry=registry,
        ready=lambda: rtmp.accepting,  # not while the RTMP port is out of descriptors
        settings=serving.http,
        specs=engine,
        secrets=secrets,
    )
    recordings.use_store(app, kept.store)
    http = await serve(app, serving.host, serving.http_port)
    worker = Standalone(engine, rtmp, http, bound_port(http), kept, srt=srt)
    if serving.http.admin_port is not None:
        worker.admin = await serve(make_admin_app(app), serving.host, serving.http.admin_port)
        worker.admin_port = bound_port(worker.admin)
    return worker


async def run_standalone(run: config.RunConfig) -> int:
    manifests = load_manifests(run.files)
    for error in manifests.errors:
        log.error("skipped: %s", error)
    if not manifests.streams:
        log.error("no CameraStream to run in %s", ", ".join(map(str, run.files)))
        return 2
    worker = await start_standalone(manifests, run.serving, secrets_dir=run.secrets_dir)
    host = run.serving.host
    index_port = worker.admin_port if worker.admin_port is not None else worker.http_port
    print(
        f"camstream: {len(manifests.streams)} streams, "
        f"index page http://{host}:{index_port}/ , rtmp://{host}:{worker.rtmp.port}/"
        + (f" , srt://{host}:{worker.srt.port}" if worker.srt is not None else ""),
        flush=True,
    )
    await wait_for_signal()
    await worker.close()
    return 0


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()
