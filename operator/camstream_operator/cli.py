"""`camstream operator`: run the operator (one of two replicas; the Lease decides who acts).

Who calls this: camstream_cli/main.py wires `add_parser`/`run` into the `camstream`
command; the chart's operator Deployment runs it. The kubeconfig comes from
KUBECONFIG, else the in-cluster ServiceAccount.

Three loops share one event loop: the leader elector (leader.py), the ring
reconciler (reconcile.py) and kopf's CameraStream watch (main.py). SIGTERM
stops kopf; the Lease is then released so the other replica takes over at
once instead of after a lease period.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from typing import Any

from .config import OperatorConfig, default_identity

log = logging.getLogger("camstream.operator")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "operator", help="run the Kubernetes operator (ring planning, handoffs, assignment)"
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the worker StatefulSet, the ring ConfigMap and the Leases",
    )
    parser.add_argument("--workers-statefulset", default="camstream-worker")
    parser.add_argument("--ring-configmap", default="camstream-ring")
    parser.add_argument("--partitions", type=int, default=256, help="ring size, a power of two")
    parser.add_argument("--liveness-port", type=int, default=8081)
    parser.add_argument("--lease-name", default="camstream-operator")
    parser.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        help="serve the CameraStreams of this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
    return parser


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        namespace=args.namespace,
        workers_statefulset=args.workers_statefulset,
        ring_configmap=args.ring_configmap,
        partitions=args.partitions,
        lease_name=args.lease_name,
        identity=default_identity(),
        watch_namespaces=tuple(args.watch_namespace),
        liveness_port=args.liveness_port,
        liveness_host=os.environ.get("POD_IP") or "127.0.0.1",
        interval=args.interval,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf logs every handler success at INFO: one line per watch event.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    asyncio.run(serve(config))
    return 0


async def serve(config: OperatorConfig) -> None:
    import kopf

    from camstream import kubeapi

    from . import main as _handlers  # noqa: F401 - registers the kopf handlers
    from .leader import LeaderElector
    from .metrics import OperatorMetrics
    from .metrics import serve as serve_metrics
    from .reconcile import RingReconciler
    from .runtime import Runtime

    async with kubeapi.KubeApi(kubeapi.load_credentials()) as api:
        leader = LeaderElector(
            api,
            namespace=config.namespace,
            name=config.lease_name,
            identity=config.identity,
            duration=config.lease_seconds,
        )
        metrics = OperatorMetrics(lambda: leader.is_leader)
        ring = RingReconciler(api, config, leader, metrics=metrics)
        runtime = Runtime(config=config, api=api, leader=leader, ring=ring)
        leader.on_change(runtime.on_leadership)
        loops = [
            asyncio.create_task(leader.run(), name="leader"),
            asyncio.create_task(ring.run(), name="ring"),
        ]
        # Liveness and metrics on one port (kopf's own liveness server has no /metrics).
        http = await serve_metrics(
            metrics,
            config.liveness_host,
            config.liveness_port,
            healthy=lambda: not any(task.done() for task in loops),
        )
        log.info(
            "operator %s: ring %s/%s, %d partitions, workers %s",
            config.identity,
            config.namespace,
            config.ring_configmap,
            config.partitions,
            config.workers_statefulset,
        )
        try:
            await kopf.operator(
                standalone=True,
                clusterwide=not config.watch_namespaces,
                namespaces=list(config.watch_namespaces),
                memo=kopf.Memo(runtime=runtime),
            )
        finally:
            await http.cleanup()
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await leader.release()
