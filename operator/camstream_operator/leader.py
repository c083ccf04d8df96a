"""Lease-based leader election: two operator replicas run, one acts.

Who calls this: cli.py starts `LeaderElector.run` beside kopf; the reconciler
and the CameraStream handler ask `is_leader` before writing anything. kopf's
own peering is not used (kopf runs standalone): a coordination.k8s.io Lease is
what Kubernetes components use for the same job, and the chart grants it.

The decision is pure (`decide`), so its table is unit-tested; `LeaderElector`
only reads and writes the Lease. A leader that cannot renew within the
lease duration steps down by itself before anyone else may take over
(renew deadline < duration), so two replicas never act at once for long.

Expiry is judged by observation, as client-go's leader election does: the
stand-by remembers, by its own monotonic clock, when it last saw the Lease
change (its resourceVersion), and takes over only once it has seen no change
for the lease duration. It never compares the leader's renewTime, written
with another machine's clock, with its own: clocks seconds apart would
otherwise make a stand-by take over from a live leader (its clock ahead) or
wait far too long for a dead one (behind). A Lease first seen, or seen again
after this replica could not read it for a while, gets a full duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from camstream import kubeapi
from camstream.retry import Backoff

log = logging.getLogger("camstream.operator.leader")


@dataclass(frozen=True, slots=True)
class Decision:
    acquire: bool  # write the Lease with us as holder (take over or renew)
    holder: str | None  # who leads according to the Lease as read


def decide(
    lease: Mapping[str, Any] | None,
    me: str,
    *,
    unchanged_for: float,
    duration: float,
) -> Decision:
    """Take the Lease if free, ours, or unchanged for its duration by our clock; else follow.

    `unchanged_for`: seconds this replica has seen the Lease without a change.
    """
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity") or None
    lease_seconds = float(spec.get("leaseDurationSeconds") or duration)
    if holder is None or holder == me or unchanged_for > lease_seconds:
        return Decision(acquire=True, holder=holder)
    return Decision(acquire=False, holder=holder)


@dataclass(slots=True)
class Sighting:
    """When this replica last saw the leader Lease change, by its monotonic clock."""

    version: str | None = None
    changed_at: float = 0.0
    read_at: float | None = None

    def observe(self, version: str | None, now: float, *, blind_after: float) -> float:
        """Record a read of the Lease at `now`; return how long it has been seen unchanged."""
        blind = self.read_at is None or now - self.read_at > blind_after
        if blind or version != self.version:
            self.changed_at = now  # a change, or a gap in what we could see: full duration
        self.version = version
        self.read_at = now
        return now - self.changed_at


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = duration
        self._retry = retry
        # After a failed round: retry, twice that, then every 5 s at most.
        self._backoff = Backoff(initial=retry, cap=5.0, jitter=0.0)
        self._clock = clock
        self._sighting = Sighting()
        self._stepped_down = False
        self._leading_until = 0.0  # monotonic deadline of our current term
        self._watchers: list[Callable[[bool], None]] = []
        self._was_leader = False

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._leading_until

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Called with the new leadership state, in the event loop, when it flips."""
        self._watchers.append(callback)

    async def run(self) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._round(started)
                attempt = 0
            except kubeapi.KubeError as exc:
                attempt += 1
                log.warning("leader lease %s: %s", self._name, exc)
            self._notify()
            await asyncio.sleep(self._retry if attempt == 0 else self._backoff.delay(attempt))

    async def release(self) -> None:
        """On shutdown: hand the Lease over at once instead of letting it expire.

        From then on this replica never takes the Lease again: it is stopping.
        """
        self._stepped_down = True
        if not self.is_leader:
            return
        self._leading_until = 0.0
        self._notify()
        path = kubeapi.lease_path(self._namespace, self._name)
        try:
            lease = await self._api.get(path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                await self._api.replace(path, lease)
        except kubeapi.KubeError as exc:
            log.warning("could not release leader lease %s: %s", self._name, exc)

    async def _round(self, started: float) -> None:
        if self._stepped_down:
            self._leading_until = 0.0
            return
        path = kubeapi.lease_path(self._namespace, self._name)
        now = self._clock()
        try:
            lease: dict[str, Any] | None = await self._api.get(path)
        except kubeapi.NotFound:
            lease = None
        version = ((lease or {}).get("metadata") or {}).get("resourceVersion")
        unchanged = self._sighting.observe(
            version, time.monotonic(), blind_after=self._duration / 2
        )
        decision = decide(lease, self.identity, unchanged_for=unchanged, duration=self._duration)
        if not decision.acquire:
            self._leading_until = 0.0
            return
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._duration),
            "renewTime": _micro_time(now),
        }
        try:
            if lease is None:
                spec["acquireTime"] = spec["renewTime"]
                await self._api.create(
                    kubeapi.lease_path(self._namespace),
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self._name, "namespace": self._namespace},
                        "spec": spec,
                    },
                )
            else:
                if decision.holder != self.identity:
                    spec["acquireTime"] = spec["renewTime"]
                    transitions = int(lease["spec"].get("leaseTransitions") or 0)
                    spec["leaseTransitions"] = transitions + 1
                lease["spec"] = {**lease.get("spec", {}), **spec}
                await self._api.replace(path, lease)  # carries resourceVersion: no races
        except kubeapi.Conflict:
            return  # someone else wrote first; read again next round
        # Our term ends a safety margin before others may take over.
        self._leading_until = started + self._duration * 2 / 3

    def _notify(self) -> None:
        leading = self.is_leader
        if leading != self._was_leader:
            self._was_leader = leading
            log.info("%s %s", self.identity, "leads" if leading else "follows")
            for callback in self._watchers:
                callback(leading)
