"""`camstream worker`: one worker pod in cluster mode.

Who calls this: camstream_cli/main.py wires `add_parser`/`run` into the `camstream`
command; the chart's worker StatefulSet runs it. Identity comes from the pod
(POD_NAME, POD_NAMESPACE, POD_IP via the downward API); the kubeconfig from
KUBECONFIG, else the in-cluster ServiceAccount.

Startup: engine (with Secrets from the API), RTMP listener, HTTP server (with
the ring-based OwnerLocator), then the agent. SIGTERM: graceful leave (the
agent waits until its partitions are handed off, at most --leave-seconds),
then everything stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from camstream import settings
from camstream.handoff import RingDoc
from camstream_worker.servers.http import settings as http_settings
from camstream_worker.sources import policy

log = logging.getLogger("camstream.worker.cluster")
# Seconds of the shutdown spent uploading the last recorded groups; the rest
# waits in the spool on the pod's volume for its next start.
RECORDING_UPLOAD_ON_EXIT = 5.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run a worker pod (cluster mode: streams assigned by the operator's ring)"
    )
    parser.add_argument("--host", default=None, help="listen address (default: POD_IP)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--rtmp-port", type=int, default=1935)
    parser.add_argument(
        "--srt-port",
        type=int,
        default=None,
        help="UDP port of the SRT ingest (off unless given); takes publishers of this "
        "worker's own streams only (routing to the owner is the ingest edge's job)",
    )
    parser.add_argument(
        "--hls-dir",
        type=Path,
        default=settings.from_env(
            "CAMSTREAM_HLS_DIR", settings.path, Path("/var/lib/camstream/hls"), flag="--hls-dir"
        ),
    )
    parser.add_argument("--ring-configmap", default="camstream-ring")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the ring ConfigMap and the heartbeat Leases",
    )
    parser.add_argument(
        "--push-via-edge",
        action=argparse.BooleanOptionalAction,
        default=settings.from_env(
            "CAMSTREAM_PUSH_VIA_EDGE", settings.boolean, False, flag="--push-via-edge"
        ),
        help="pushed cameras come through the ingest edge: a handoff waits for their publisher",
    )
    parser.add_argument(
        "--leave-seconds",
        type=float,
        default=settings.from_env(
            "CAMSTREAM_LEAVE_SECONDS", settings.seconds, 25.0, flag="--leave-seconds"
        ),
        help="on SIGTERM, wait at most this long for handoffs (below the grace period)",
    )
    parser.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        help="serve the CameraStreams of this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=5.0,
        help="renew the heartbeat Lease this often; it lasts three times as long",
    )
    parser.add_argument(
        "--source-deny-cidrs",
        type=policy.cidrs_argument,
        default=None,
        help=policy.DENY_FLAG_HELP,
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=settings.from_env("CAMSTREAM_PROCESSES", settings.count, 1, flag="--processes"),
        help="engine processes (more than 1 shards the streams over child processes)",
    )
    http_settings.add_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    name = os.environ.get("POD_NAME")
    if not name:
        log.error("POD_NAME is not set: cluster mode needs the pod's identity")
        return 2
    args.http = http_settings.from_args(args)  # a bad value ends here, naming its flag
    from camstream_worker.protocols.rtmp import forwarded

    from .peer_auth import token_from_env

    try:
        forwarded.token_from_env()  # read again by each RTMP server; checked once here
        args.peer_token = token_from_env()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if args.peer_token is None:
        log.warning(
            "no peer token (CAMSTREAM_PEER_TOKEN): handoffs are not fenced, so a viewer's "
            "player may wait a moment at each one"
        )
    return asyncio.run(serve(args)) or 0


async def serve(args: argparse.Namespace) -> int:
    from camstream import kubeapi
    from camstream_worker.metrics.worker import worker_registry
    from camstream_worker.outputs.recording import service as recording
    from camstream_worker.outputs.recording.uploader import RecordingCollector, UploadStats
    from camstream_worker.pool.sharded import ShardedEngine
    from camstream_worker.servers.http import recordings
    from camstream_worker.servers.http.server import make_admin_app, make_app
    from camstream_worker.servers.http.server import serve as serve_http
    from camstream_worker.servers.rtmp.limits import Limits, raise_fd_limit
    from camstream_worker.servers.srt.hosting import SrtService
    from camstream_worker.servers.srt.limits import SrtLimits

    from .agent import Agent, Identity
    from .clock import ClusterClock
    from .fencing import Fencing
    from .locator import RingLocator
    from .secrets import KubeSecrets

    identity = Identity(
        pod_name=os.environ["POD_NAME"],
        pod_namespace=os.environ.get("POD_NAMESPACE", args.operator_namespace),
        pod_ip=os.environ.get("POD_IP", "127.0.0.1"),
    )
    host = args.host or identity.pod_ip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)

    # Every answer of the API server is a reading of the cluster's clock (clock.py).
    cluster_clock = ClusterClock()
    credentials = kubeapi.load_credentials()
    async with kubeapi.KubeApi(credentials, on_response=cluster_clock.observe) as api:
        # In a cluster recordings go where the chart says (an S3 store); none: off.
        kept = await recording.start(
            args.hls_dir,
            default_folder=None,
            on_loss=recording.LossReports(lambda loss: _report_loss(api, loss)),
        )
        # Always behind the RTMP front, even with one engine process: a
        # publisher that reached this worker for another worker's stream is
        # relayed there by the front, which needs to see its connect first.
        raise_fd_limit()  # before anything sizes its caps from it
        secrets = KubeSecrets(api)  # stream credentials and playback signing keys
        denied = args.source_deny_cidrs
        if denied is None:
            denied = settings.from_env(
                policy.DENY_VARIABLE,
                policy.parse_cidrs,
                policy.DEFAULT_DENIED,
                flag="--source-deny-cidrs",
            )
        engine = ShardedEngine(
            args.hls_dir,
            secrets,
            max(1, args.processes),
            sources=policy.SourcePolicy.build(denied=denied),  # no file roots: no local files
            rtmp_limits=Limits.from_env(),
            recording_spool=kept.engine_spool,
            recording_defaults=kept.defaults,
        )
        await engine.start()
        fencing = Fencing(
            me=identity.pod_name,
            engine=engine,
            doc=lambda: agent.current_doc(),
            http_port=args.http_port,
            token=args.peer_token,
            offset=cluster_clock.wall_offset,
        )
        agent = Agent(
            api=api,
            engine=engine,
            identity=identity,
            ring_namespace=args.operator_namespace,
            ring_name=args.ring_configmap,
            http_port=args.http_port,
            watch_namespaces=tuple(args.watch_namespace),
            heartbeat_seconds=args.heartbeat_seconds,
            cluster_clock=cluster_clock,
            push_via_edge=args.push_via_edge,
            fencing=fencing,
        )
        locator = RingLocator(
            identity.pod_name, args.http_port, agent.current_doc, rtmp_port=args.rtmp_port
        )
        rtmp = await engine.serve_rtmp(
            host, args.rtmp_port, owner=locator.owner_rtmp, is_mine=locator.is_mine
        )
        srt = None
        if args.srt_port is not None:
            srt = await SrtService.start(
                host, args.srt_port, engine, secrets, limits=SrtLimits.from_env()
            )
        registry = worker_registry(
            lambda: engine.rtmp_stats(rtmp),
            srt_stats=srt.stats if srt is not None else None,
            partitions=lambda: _owned_partitions(agent.current_doc(), identity.pod_name),
            double_serving=lambda: agent.double_serving_seconds,
        )
        # Exported with recording off too (all zero), so dashboards and alerts see one shape.
        stats = kept.uploader.stats if kept.uploader is not None else UploadStats()
        registry.register(RecordingCollector(stats))
        app = make_app(
            engine,
            args.hls_dir,
            owner=locator,
            # Not ready while the RTMP port is out of descriptors either.
            ready=lambda: agent.ready() and rtmp.accepting,
            worker_name=identity.pod_name,
            registry=registry,
            settings=args.http,
            specs=engine,
            secrets=secrets,
        )
        recordings.use_store(app, kept.store)
        fencing.add_route(app)
        http = await serve_http(app, host, args.http_port)
        admin = None
        if args.http.admin_port is not None:
            admin = await serve_http(make_admin_app(app), host, args.http.admin_port)
        log.info(
            "worker %s on %s: http %d, rtmp %d, ring %s/%s",
            identity.pod_name,
            host,
            args.http_port,
            args.rtmp_port,
            args.operator_namespace,
            args.ring_configmap,
        )
        agent_task = asyncio.create_task(agent.run(), name="agent")
        try:
            done, _ = await asyncio.wait(
                [agent_task, asyncio.create_task(stop.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            if agent_task in done:
                agent_task.result()  # surfaces a crash of the agent
            started = time.monotonic()
            if await agent.leave(deadline=started + args.leave_seconds):
                await fencing.linger()  # the last handoffs' new owners fence us now
        finally:
            agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
            if srt is not None:
                await srt.close()
            await rtmp.close()
            await engine.apply({})  # stop every stream and remove its files
            await engine.close()
            await fencing.close()
            # What the recorders closed last goes up within the grace period left.
            await kept.close(deadline=time.monotonic() + RECORDING_UPLOAD_ON_EXIT)
            if admin is not None:
                await admin.cleanup()
            await http.cleanup()
    return 0


async def _report_loss(api: Any, loss: Any) -> None:
    """One Warning Event on the stream whose recording lost groups (summarised by LossReports)."""
    from camstream import kubeevents
    from camstream.wire import API_GROUP, API_VERSION, KIND

    involved = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"namespace": loss.key.namespace, "name": loss.key.name},
    }
    message = (
        f"{loss.groups} recorded groups ({loss.seconds:.0f} s, {loss.bytes} bytes) were dropped: "
        "the recording spool was full while the object store could not take them"
    )
    await kubeevents.post(
        api,
        involved,
        type_="Warning",
        reason="RecordingDropped",
        message=message,
        component="camstream-worker",
    )


def _owned_partitions(doc: RingDoc | None, worker: str) -> int:
    """Partitions this worker produces now (home or as a fallback)."""
    return 0 if doc is None else sum(1 for owner in doc.serving if owner == worker)
