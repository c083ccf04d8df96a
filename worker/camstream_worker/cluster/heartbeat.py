"""The worker's heartbeat Lease: alive, leaving, and which handoffs are live here.

Who calls this: agent.py sets what to announce (`announce`); `run` renews the
Lease every couple of seconds and writes at once when the announcement
changes. The operator watches all workers' Leases (membership.py): a Lease
not seen renewed for its duration means a worker that is dead or cut off
(a crash the kubelet sees is faster: the pod turns not Ready), the leaving
annotation starts a graceful leave, the confirmed annotation completes
handoffs. One write per worker every `period` seconds (5 by default, so 200
workers cost the API server 40 writes a second), never one per stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from camstream import kubeapi
from camstream.wire import (
    CONFIRMED_ANNOTATION,
    HEARTBEAT_LABEL,
    LEAVING_ANNOTATION,
    encode_confirmed,
    heartbeat_lease_name,
)

log = logging.getLogger("camstream.worker.cluster")


class Heartbeat:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        *,
        namespace: str,
        worker: str,
        ring_name: str,
        period: float = 5.0,
        duration: int | None = None,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._worker = worker
        self._ring_name = ring_name
        self._period = period
        # Three renewals per duration: one lost write is not a failover.
        self._duration = duration if duration is not None else max(3, math.ceil(3 * period))
        self._confirmed = ""
        self._leaving = False
        self._wake = asyncio.Event()
        self.written = asyncio.Event()  # set after the first successful write
        self._last_written: tuple[str, bool] | None = None
        # Monotonic time of the last successful write: the operator cannot have
        # judged this worker silent before a Lease duration after it.
        self.last_success: float | None = None
        self.on_recovered: Callable[[], None] | None = None  # first write after failures
        self._started = time.monotonic()
        # The current or latest outage: (last success before it, first success after).
        self._outage: tuple[float, float | None] | None = None

    @property
    def duration(self) -> int:
        return self._duration

    def unheard_since(self) -> float | None:
        """Since when the operator may not have heard us: the last write before the latest outage.

        None if no write ever failed. The operator fails a worker over no
        sooner than a Lease duration after this.
        """
        return None if self._outage is None else self._outage[0]

    @property
    def announced(self) -> tuple[str, bool]:
        return self._confirmed, self._leaving

    def announce(
        self, *, confirmed: frozenset[tuple[int, int]] | None = None, leaving: bool | None = None
    ) -> None:
        if confirmed is not None:
            self._confirmed = encode_confirmed(confirmed)
        if leaving is not None:
            self._leaving = leaving
        if (self._confirmed, self._leaving) != self._last_written:
            self._wake.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            self._wake.clear()
            try:
                await self.beat()
                if attempt:
                    if self._outage is not None:
                        self._outage = (self._outage[0], self.last_success)
                    if self.on_recovered is not None:
                        self.on_recovered()
                attempt = 0
            except kubeapi.KubeError as exc:
                if attempt == 0:
                    self._outage = (self.last_success or self._started, None)
                attempt += 1
                log.warning("heartbeat lease: %s (attempt %d)", exc, attempt)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._period)
            except TimeoutError:
                pass

    async def beat(self) -> None:
        sent = time.monotonic()  # the write lands after this: a safe bound for last_success
        state = (self._confirmed, self._leaving)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        name = heartbeat_lease_name(self._worker)
        metadata = {
            "labels": {HEARTBEAT_LABEL: self._ring_name},
            "annotations": {
                CONFIRMED_ANNOTATION: state[0],
                LEAVING_ANNOTATION: "true" if state[1] else "false",
            },
        }
        spec = {
            "holderIdentity": self._worker,
            "leaseDurationSeconds": self._duration,
            "renewTime": now,
        }
        try:
            await self._api.patch(
                kubeapi.lease_path(self._namespace, name), {"metadata": metadata, "spec": spec}
            )
        except kubeapi.NotFound:
            await self._api.create(
                kubeapi.lease_path(self._namespace),
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": self._namespace, **metadata},
                    "spec": {**spec, "acquireTime": now},
                },
            )
        self._last_written = state
        self.last_success = sent
        self.written.set()
