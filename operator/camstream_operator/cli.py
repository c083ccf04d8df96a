"""`camstream operator`: run the operator (one of two replicas; the Lease decides who acts).

Who calls this: camstream_cli/main.py wires `add_parser`/`run` into the `camstream`
command; the chart's operator Deployment runs it. The kubeconfig comes from
KUBECONFIG, else the in-cluster ServiceAccount.

Loops sharing one event loop: the leader elector (leader.py), the ring
reconciler (reconcile.py), the fallback labeller (labeller.py), an
event-loop lag probe, and kopf serving the admission webhook (main.py).
SIGTERM stops kopf; the Lease is then released so the other replica takes
over at once instead of after a lease period.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from pathlib import Path
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
    parser.add_argument(
        "--rejoin-grace",
        type=float,
        default=300.0,
        help="seconds a worker may be away (restart, crash) and keep its home partitions",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        type=Path,
        default=None,
        help="serve the admission webhook with tls.crt/tls.key from this folder "
        "(default: no webhook; the fallback labeller labels every stream)",
    )
    parser.add_argument("--webhook-port", type=int, default=9443)
    parser.add_argument(
        "--label-rate", type=float, default=200.0, help="fallback label patches per second, at most"
    )
    parser.add_argument(
        "--retention-interval",
        type=float,
        default=300.0,
        help="seconds between retention sweeps of the recordings store (leader only)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--recheck-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
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
        rejoin_grace=args.rejoin_grace,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_port=args.webhook_port,
        webhook_host=os.environ.get("POD_IP") or "127.0.0.1",
        label_rate=args.label_rate,
        recheck_seconds=args.recheck_seconds,
        retention_interval=args.retention_interval,
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
    from camstream.looplag import LoopLag
    from camstream.storage import config as store_config

    from . import main
    from .janitor import JanitorMetrics, RetentionJanitor
    from .labeller import Labeller
    from .leader import LeaderElector
    from .metrics import OperatorMetrics
    from .metrics import serve as serve_metrics
    from .reconcile import RingReconciler

    # Recordings' retention: only where the chart configured a store.
    store = await store_config.open_store(store_config.from_env())
    async with kubeapi.KubeApi(kubeapi.load_credentials()) as api:
        leader = LeaderElector(
            api,
            namespace=config.namespace,
            name=config.lease_name,
            identity=config.identity,
            duration=config.lease_seconds,
        )
        metrics = OperatorMetrics(lambda: leader.is_leader)
        ring: RingReconciler | None = None
        labeller = Labeller(
            api,
            leader,
            ring_doc=lambda: ring.doc if ring is not None else None,
            watch_namespaces=config.watch_namespaces,
            rate=config.label_rate,
            recheck_seconds=config.recheck_seconds,
            metrics=metrics,
        )
        ring = RingReconciler(api, config, leader, labelling=labeller, metrics=metrics)
        leader.on_change(lambda leading: ring.wake() if leading else None)
        leader.on_change(labeller.on_leadership)
        lag = LoopLag(observe=metrics.record_loop_lag)
        loops = [
            asyncio.create_task(leader.run(), name="leader"),
            asyncio.create_task(ring.run(), name="ring"),
            asyncio.create_task(labeller.run(), name="labeller"),
            asyncio.create_task(lag.run(), name="loop-lag"),
        ]
        if store is not None:
            janitor = RetentionJanitor(
                store,
                leading=lambda: leader.is_leader,
                metrics=JanitorMetrics(metrics.registry),
                interval=config.retention_interval,
            )
            loops.append(asyncio.create_task(janitor.run(), name="retention"))
        # Liveness and metrics on one port (kopf's own liveness server has no /metrics).
        http = await serve_metrics(
            metrics,
            config.liveness_host,
            config.liveness_port,
            healthy=lambda: not any(task.done() for task in loops),
        )
        await _certificate_ready(config)
        registry = kopf.OperatorRegistry()
        main.register(
            registry,
            webhook=_webhook_server(config),
            ring_size=ring.ring_size,
            stepping_down=leader.release,
        )
        log.info(
            "operator %s: ring %s/%s, %d partitions, workers %s, webhook %s",
            config.identity,
            config.namespace,
            config.ring_configmap,
            config.partitions,
            config.workers_statefulset,
            f"on :{config.webhook_port}" if config.webhook_cert_dir else "off",
        )
        try:
            await kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not config.watch_namespaces,
                namespaces=list(config.watch_namespaces),
            )
        finally:
            await http.cleanup()
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await leader.release()
            if store is not None:
                await store.close()


async def _certificate_ready(config: OperatorConfig) -> None:
    """Wait for the webhook's certificate files (cert-manager may issue them after we start).

    The ring and the labeller already run meanwhile: streams are labelled
    either way, only not in their create request.
    """
    if config.webhook_cert_dir is None:
        return
    files = [config.webhook_cert_dir / "tls.crt", config.webhook_cert_dir / "tls.key"]
    said = False
    while not all(f.is_file() for f in files):
        if not said:
            log.warning("waiting for the webhook certificate in %s", config.webhook_cert_dir)
            said = True
        await asyncio.sleep(1.0)


def _webhook_server(config: OperatorConfig) -> Any | None:
    """kopf's HTTPS server for the admission webhook, or None when not configured."""
    if config.webhook_cert_dir is None:
        return None
    import kopf

    return kopf.WebhookServer(
        addr=config.webhook_host,
        port=config.webhook_port,
        certfile=str(config.webhook_cert_dir / "tls.crt"),
        pkeyfile=str(config.webhook_cert_dir / "tls.key"),
    )
