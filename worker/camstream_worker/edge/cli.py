"""`camstream edge` (console script `camstream-edge`): one ingest edge pod.

Who calls this: camstream_cli/main.py wires `add_parser` into the `camstream`
command; the chart's edge Deployment runs it. The kubeconfig comes from
KUBECONFIG, else the in-cluster ServiceAccount; the edge reads one object,
the ring ConfigMap (watched with camstream/kubewatch.py), and writes none;
with --srt-port it also gets the CameraStreams its SRT cameras name and the
Secrets their passphrases come from (passphrases.py).

Startup: watch the ring, open the RTMP port (and the SRT port), serve /healthz, /readyz and
/metrics on --http-port. /readyz is 200 once the ring is known and every
port accepts, 503 while draining. SIGTERM: drain (server.py) for at most
--drain-seconds (the chart's terminationGracePeriodSeconds is longer), then
exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from camstream import settings

log = logging.getLogger("camstream.edge")

DRAIN_SECONDS = 30.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "edge", help="run an ingest edge pod (holds pushed cameras through worker changes)"
    )
    _arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default: POD_IP)")
    parser.add_argument("--rtmp-port", type=int, default=1935, help="the cameras' RTMP port")
    parser.add_argument(
        "--worker-rtmp-port", type=int, default=1935, help="the workers' RTMP port (all alike)"
    )
    parser.add_argument(
        "--srt-port",
        type=int,
        default=None,
        help="the cameras' SRT port (UDP; default: no SRT). Reads CameraStreams and their Secrets",
    )
    parser.add_argument(
        "--worker-srt-port", type=int, default=8890, help="the workers' SRT port (all alike)"
    )
    parser.add_argument("--http-port", type=int, default=8081, help="/readyz and /metrics")
    parser.add_argument("--ring-configmap", default="camstream-ring")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the ring ConfigMap",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=settings.from_env(
            "CAMSTREAM_EDGE_DRAIN_SECONDS",
            settings.seconds,
            DRAIN_SECONDS,
            flag="--drain-seconds",
        ),
        help="on SIGTERM, keep live cameras at most this long (below the grace period)",
    )


def run(args: argparse.Namespace) -> int:
    from camstream_worker.protocols.rtmp import forwarded

    try:
        forwarded.token_from_env()
    except ValueError as exc:
        print(f"camstream edge: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(args)) or 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `camstream-edge` console script: `camstream edge` under its own name."""
    parser = argparse.ArgumentParser(prog="camstream-edge", description=__doc__.split("\n")[0])
    _arguments(parser)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        level = settings.from_env("CAMSTREAM_LOG_LEVEL", settings.log_level, "INFO")
    except settings.SettingError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


async def serve(args: argparse.Namespace) -> int:
    from aiohttp import web
    from prometheus_client import generate_latest

    from camstream import kubeapi
    from camstream.handoff import RingDoc
    from camstream.handoff_codec import CodecError, decode_doc
    from camstream.kubewatch import Informer
    from camstream_worker.cluster.secrets import KubeSecrets
    from camstream_worker.servers.rtmp.limits import Limits, raise_fd_limit
    from camstream_worker.servers.srt.limits import SrtLimits

    from .passphrases import PassphraseCache, api_fetch
    from .server import READ_BATCH_SECONDS, Edge, RtmpListener
    from .srt_relay import SrtRelay

    host = args.host or os.environ.get("POD_IP", "127.0.0.1")
    raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)

    doc: list[RingDoc | None] = [None]
    async with kubeapi.KubeApi(kubeapi.load_credentials()) as api:

        def changed(*_: object) -> None:
            for body in ring.items.values():
                try:
                    doc[0] = decode_doc(body.get("data") or {})
                except CodecError as exc:
                    log.error("ring ConfigMap unreadable, keeping the last one: %s", exc)

        ring: Informer[dict[str, Any]] = Informer(
            api,
            kubeapi.configmap_path(args.operator_namespace),
            field_selector=f"metadata.name={args.ring_configmap}",
            on_change=changed,
            on_sync=changed,
            name=f"ring {args.operator_namespace}/{args.ring_configmap}",
            max_backoff=2.0,
        )
        edge = Edge(
            ring=lambda: doc[0],
            worker_rtmp_port=args.worker_rtmp_port,
            limits=Limits.from_env().replace(read_batch_seconds=READ_BATCH_SECONDS),
        )
        edge.add_listener(RtmpListener(edge, host, args.rtmp_port))
        if args.srt_port is not None:
            cache = PassphraseCache(api_fetch(api, KubeSecrets(api)), loop.call_soon_threadsafe)
            srt = SrtRelay(
                edge,
                host,
                args.srt_port,
                worker_srt_port=args.worker_srt_port,
                passphrases=cache,
                limits=SrtLimits.from_env(),
            )
            edge.add_listener(srt)
            edge.metrics.watch_srt(stats=srt.stats)

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_: web.Request) -> web.Response:
            if edge.ready:
                return web.Response(text="ready\n")
            return web.Response(status=503, text="not ready\n")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(edge.metrics.registry),
                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, args.http_port).start()
        watch = asyncio.create_task(ring.run(), name="ring watch")
        try:
            await edge.start()
            log.info(
                "edge on %s: rtmp %d → workers' rtmp %d, http %d, ring %s/%s",
                host,
                args.rtmp_port,
                args.worker_rtmp_port,
                args.http_port,
                args.operator_namespace,
                args.ring_configmap,
            )
            await stop.wait()
            await edge.drain(args.drain_seconds)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await edge.close()
            await runner.cleanup()
    return 0
