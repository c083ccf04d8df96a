"""`camstream worker`: one worker pod in cluster mode.

Who calls this: camstream/cli.py wires `add_parser`/`run` into the `camstream`
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

from camstream.handoff import RingDoc

log = logging.getLogger("camstream.worker.cluster")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run a worker pod (cluster mode: streams assigned by the operator's ring)"
    )
    parser.add_argument("--host", default=None, help="listen address (default: POD_IP)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--rtmp-port", type=int, default=1935)
    parser.add_argument(
        "--hls-dir",
        type=Path,
        default=Path(os.environ.get("CAMSTREAM_HLS_DIR", "/var/lib/camstream/hls")),
    )
    parser.add_argument("--ring-configmap", default="camstream-ring")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the ring ConfigMap and the heartbeat Leases",
    )
    parser.add_argument(
        "--leave-seconds",
        type=float,
        default=float(os.environ.get("CAMSTREAM_LEAVE_SECONDS", "25")),
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
        "--processes",
        type=int,
        default=int(os.environ.get("CAMSTREAM_PROCESSES", "1")),
        help="engine processes (more than 1 shards the streams over child processes)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    name = os.environ.get("POD_NAME")
    if not name:
        log.error("POD_NAME is not set: cluster mode needs the pod's identity")
        return 2
    return asyncio.run(serve(args)) or 0


async def serve(args: argparse.Namespace) -> int:
    from camstream import kubeapi
    from camstream_worker.http_server import make_app
    from camstream_worker.http_server import serve as serve_http
    from camstream_worker.shards import ShardedEngine
    from camstream_worker.worker_metrics import worker_registry

    from .agent import Agent, Identity
    from .clock import ClusterClock
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
        # Always behind the RTMP front, even with one engine process: a
        # publisher that reached this worker for another worker's stream is
        # relayed there by the front, which needs to see its connect first.
        engine = ShardedEngine(args.hls_dir, KubeSecrets(api), max(1, args.processes))
        await engine.start()
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
        )
        locator = RingLocator(
            identity.pod_name, args.http_port, agent.current_doc, rtmp_port=args.rtmp_port
        )
        rtmp = await engine.serve_rtmp(
            host, args.rtmp_port, owner=locator.owner_rtmp, is_mine=locator.is_mine
        )
        app = make_app(
            engine,
            args.hls_dir,
            owner=locator,
            ready=agent.ready,
            worker_name=identity.pod_name,
            registry=worker_registry(
                lambda: engine.rtmp_stats(rtmp),
                partitions=lambda: _owned_partitions(agent.current_doc(), identity.pod_name),
                double_serving=lambda: agent.double_serving_seconds,
            ),
        )
        http = await serve_http(app, host, args.http_port)
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
            await agent.leave(deadline=started + args.leave_seconds)
        finally:
            agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
            await rtmp.close()
            await engine.apply({})  # stop every stream and remove its files
            await engine.close()
            await http.cleanup()
    return 0


def _owned_partitions(doc: RingDoc | None, worker: str) -> int:
    """Partitions this worker produces now (home or as a fallback)."""
    return 0 if doc is None else sum(1 for owner in doc.serving if owner == worker)
