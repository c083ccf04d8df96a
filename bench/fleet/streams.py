"""N CameraStreams created in bulk, as a GitOps sync or a script would.

Who calls this: scenario.py. Streams are spread over a few namespaces
(`fleet-0` ... `fleet-9`) and are RTMP push streams with a stream-key Secret
reference: the cheapest kind for the API server (no URL, no credentials) and,
for a real worker, a stream that waits for its camera without decoding
anything. Creates go out `in_flight` at a time (64 by default, the figure
DESIGN.md's write budget was measured with); each one's completion time goes
to the tracker. A create the API server refuses for load (429) or answers
with a 5xx is retried after a short pause and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from camstream import kubeapi
from camstream.wire import API_GROUP, API_VERSION
from tests.cluster.kubeapi import ApiError, KubeClient

from .api import BenchApi

KEY_SECRET = "fleet-stream-key"


def namespaces(count: int) -> list[str]:
    return [f"fleet-{i}" for i in range(count)]


def keys(streams: int, spread: int) -> list[tuple[str, str]]:
    """(namespace, name) of every stream, round-robin over the namespaces."""
    return [(f"fleet-{i % spread}", f"cam-{i:06d}") for i in range(streams)]


def body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "CameraStream",
        "metadata": {"name": name},
        "spec": {"source": {"protocol": "rtmp", "streamKeySecretRef": {"name": KEY_SECRET}}},
    }


def prepare_namespaces(admin: KubeClient, names: list[str]) -> None:
    """Create the stream namespaces and the key Secret in each (idempotent)."""
    for ns in names:
        for path, obj in (
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}}),
            (f"/api/v1/namespaces/{ns}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "metadata": {
                    "name": KEY_SECRET,
                    "labels": {"camstream.io/usage": "camera-credentials"}},  # opted in
                "stringData": {"streamKey": f"{ns}-k3y"}}),
        ):  # fmt: skip
            try:
                admin.create(path, obj)
            except ApiError as exc:
                if exc.status != 409:
                    raise


@dataclass
class Created:
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per create call
    retries: Counter[int] = field(default_factory=Counter)  # by HTTP status
    failed: Counter[int] = field(default_factory=Counter)  # gave up, by HTTP status

    @property
    def rate(self) -> float:
        return len(self.latencies) / max(self.finished - self.started, 1e-9)


async def create_all(
    api: BenchApi,
    targets: list[tuple[str, str]],
    *,
    in_flight: int,
    on_created: Callable[[str, float], None],
    attempts: int = 8,
) -> Created:
    """Create every (namespace, name), `in_flight` at a time."""
    result = Created(started=time.time())
    queue = iter(targets)

    async def one(ns: str, name: str) -> None:
        for attempt in range(attempts):
            began = time.time()
            try:
                answer = await api.request(
                    "POST", kubeapi.stream_path(ns), body(name), parse=False, time_limit=300
                )
                status = answer.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = 0  # no answer: retried like a 5xx
            done = time.time()
            if status in (200, 201, 409):  # 409: already there from a retried call
                result.latencies.append(done - began)
                on_created(f"{ns}/{name}", done)
                return
            if status in (0, 429) or status >= 500:
                result.retries[status] += 1
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            break
        result.failed[status] += 1

    async def lane() -> None:
        for ns, name in queue:  # lanes share the iterator: each key is taken once
            await one(ns, name)

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    result.finished = time.time()
    return result
