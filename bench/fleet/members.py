"""W worker members that cost nothing: pods made Ready through the API, heartbeats renewed.

Who calls this: scenario.py. The operator decides membership from the worker
StatefulSet's pods (Ready, not terminating) and the workers' heartbeat
Leases (operator/camstream_operator/membership.py). The bench provides both
without running a worker:

- the chart's worker StatefulSet object (the operator reads its selector);
  no controller runs, so it never makes pods of its own;
- W pods `<statefulset>-<i>` with the selector's labels, owned by the
  StatefulSet as its own pods are, bound to a node that does not exist, then
  their status patched to Running and Ready with a loopback pod IP (127.88.x.y);
- one heartbeat Lease per pod, renewed by camstream_worker's own `Heartbeat`
  class (same name, labels, annotations, duration) every period of the worker
  CLI's default (`--heartbeat-seconds`), so it stays in step with the worker.
  They are written as the MEMBERS_ACCOUNT ServiceAccount, bound to the chart's
  worker Role, so the audit log counts them apart from a real worker;
- a fake worker runs no stream, so it confirms every handoff to it as soon as
  the ring shows it (`confirm`, fed by the bench's poll of the ring), as a real
  worker does once the partition's streams are live: the ring settles as it
  would with real workers instead of rolling handoffs back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from camstream import handoff, kubeapi
from camstream.conditions import now_rfc3339
from camstream.handoff_codec import CodecError, decode_doc
from camstream_worker.cluster import cli as worker_cli
from camstream_worker.cluster.heartbeat import Heartbeat
from tests.cluster.kubeapi import KubeClient

from .config import FAKE_NODE, NAMESPACE

log = logging.getLogger("fleet.members")


def pod_ip(index: int) -> str:
    """A loopback address per fake worker: 127.88.0.1, 127.88.0.2, ..."""
    return f"127.88.{index // 250}.{index % 250 + 1}"


def worker_heartbeat_seconds() -> float:
    """The period a real worker renews its Lease with: the worker CLI's default."""
    parser = argparse.ArgumentParser()
    worker_cli.add_parser(parser.add_subparsers())
    return float(parser.parse_args(["worker"]).heartbeat_seconds)


def _pod(statefulset: dict[str, Any], index: int) -> dict[str, Any]:
    meta, spec = statefulset["metadata"], statefulset["spec"]
    name = f"{meta['name']}-{index}"
    labels = {
        **spec["template"]["metadata"].get("labels", {}),
        "statefulset.kubernetes.io/pod-name": name,
        "apps.kubernetes.io/pod-index": str(index),
    }
    template = spec["template"]["spec"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": FAKE_NODE,
            "hostname": name,
            "subdomain": spec.get("serviceName", meta["name"]),
            "serviceAccountName": template.get("serviceAccountName", "default"),
            "automountServiceAccountToken": False,
            "containers": [{"name": "worker", "image": template["containers"][0]["image"]}],
        },
    }


def _ready_status(index: int, now: str) -> dict[str, Any]:
    ip = pod_ip(index)
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": "worker",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "camstream/worker",
                    "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }


def create_pods(admin: KubeClient, statefulset: dict[str, Any], workers: int) -> list[str]:
    """Create the StatefulSet object and W Running, Ready pods; return the pod names."""
    body = {**statefulset, "spec": {**statefulset["spec"], "replicas": workers}}
    created = admin.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets", body)
    now = now_rfc3339()

    def one(index: int) -> str:
        pod = admin.create(f"/api/v1/namespaces/{NAMESPACE}/pods", _pod(created, index))
        name = str(pod["metadata"]["name"])
        admin.merge_patch(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/status",
                          _ready_status(index, now))  # fmt: skip
        return name

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(workers)))


class Heartbeats:
    """One camstream_worker Heartbeat per fake worker, on one shared client."""

    def __init__(self, kubeconfig: Path, ring_name: str, period: float) -> None:
        self._api = kubeapi.KubeApi(kubeapi.load_credentials(str(kubeconfig)))
        self._ring_name = ring_name
        self.period = period
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._beats: dict[str, Heartbeat] = {}

    async def start(self, names: list[str]) -> None:
        """Start every heartbeat, spread over one period as independent pods would be."""
        for i, name in enumerate(names):
            self.resume(name, delay=self.period * i / max(len(names), 1))
        # Every Lease written once before the operator looks.
        await asyncio.sleep(self.period + 1.0)

    def resume(self, name: str, delay: float = 0.0) -> None:
        if name in self._tasks:
            return
        beat = Heartbeat(
            self._api, namespace=NAMESPACE, worker=name, ring_name=self._ring_name,
            period=self.period,
        )  # fmt: skip

        async def run() -> None:
            await asyncio.sleep(delay)
            await beat.run()

        self._beats[name] = beat
        self._tasks[name] = asyncio.get_running_loop().create_task(run(), name=f"beat {name}")

    def confirm(self, ring_data: dict[str, str] | None) -> None:
        """Confirm at once every handoff the ring ConfigMap's data starts towards us."""
        try:
            doc = decode_doc(ring_data) if ring_data else None
        except CodecError:
            return
        if doc is None:
            return
        for name, beat in self._beats.items():
            incoming = handoff.handoffs_to(doc, name)
            beat.announce(confirmed=frozenset((p, h.id) for p, h in incoming.items()))

    async def pause(self, name: str) -> None:
        """Stop renewing `name`'s Lease (a real worker takes it over)."""
        task = self._tasks.pop(name, None)
        self._beats.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for name in list(self._tasks):
            await self.pause(name)
        await self._api.close()
