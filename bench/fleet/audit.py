"""The API server's audit log, counted by who, verb, resource and response code.

Who calls this: scenario.py, which reads the new part of the log at the end
of each phase (`catch_up`) and then asks for the counts inside the phase's
time window (`window`). The log is the API server's own record of every
request it served (plane.py sets it up: JSON lines, Metadata level), and the
only one that names the user: the operator's ServiceAccount, the fake
workers' heartbeat account, a real worker, and the bench itself (the admin
certificate). Reading is deferred to phase ends so that parsing a million
lines never competes for the CPU with what is being measured.

One request is one line: ResponseComplete (or Panic) for ordinary requests,
ResponseStarted for watches, which complete only when they end. Each
ordinary request's time inside the API server (stageTimestamp minus
requestReceivedTimestamp) is kept too: it tells a slow API server from a
client that queues its own requests.
Counts are kept per tenth of a second of `requestReceivedTimestamp`; windows
are half-open, so back-to-back phases never count a request twice.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class Request(NamedTuple):
    role: str  # operator | workers | members | bench | system:...
    verb: str
    resource: str  # "camerastreams", "camerastreams/status", "leases", ...; a path for URLs
    code: int


Counts = Counter[Request]


class AuditLog:
    def __init__(self, path: Path, roles: Mapping[str, str]) -> None:
        self._path = path
        self._roles = dict(roles)  # username -> role; others keep their username
        self._offset = 0
        self._partial = b""
        self._seconds: dict[str, int] = {}  # "YYYY-mm-ddTHH:MM:SS" -> epoch second
        self.by_tick: dict[int, Counts] = {}  # tick: a tenth of a second since the epoch
        self.latencies: dict[str, list[tuple[int, float]]] = {}  # role -> (tick, seconds)
        self.latest = 0.0  # the latest requestReceivedTimestamp read, epoch seconds
        self.lines = 0
        self.unreadable = 0

    def catch_up(self) -> int:
        """Read what the API server appended since the last call; returns lines read."""
        if not self._path.exists():
            return 0
        read = 0
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            while True:
                chunk = handle.read(8 << 20)
                if not chunk:
                    break
                self._offset += len(chunk)
                data = self._partial + chunk
                *lines, self._partial = data.split(b"\n")
                for line in lines:
                    if line:
                        self._add(line)
                        read += 1
        self.lines += read
        return read

    def _add(self, line: bytes) -> None:
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            self.unreadable += 1
            return
        verb = str(event.get("verb", ""))
        stage = event.get("stage")
        if stage == ("ResponseStarted" if verb == "watch" else "ResponseComplete") or (
            stage == "Panic"
        ):
            user = str((event.get("user") or {}).get("username", ""))
            ref = event.get("objectRef") or {}
            if ref.get("resource"):
                resource = str(ref["resource"])
                if ref.get("subresource"):
                    resource = f"{resource}/{ref['subresource']}"
            else:  # discovery and other non-resource URLs: the path says what it was
                resource = str(event.get("requestURI", "-")).split("?")[0]
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            received = self._epoch(str(event.get("requestReceivedTimestamp", "")))
            tick = math.floor(received * 10)
            self.latest = max(self.latest, received)
            counts = self.by_tick.setdefault(tick, Counter())
            role = self._roles.get(user, user)
            counts[Request(role, verb, resource, code)] += 1
            if verb != "watch":
                served = self._epoch(str(event.get("stageTimestamp", ""))) - received
                self.latencies.setdefault(role, []).append((tick, served))

    def _epoch(self, stamp: str) -> float:
        # "2026-12-03T09:11:52.604289Z": the second parsed once per second, then the fraction.
        key = stamp[:19]
        second = self._seconds.get(key)
        if second is None:
            second = int(datetime.fromisoformat(key + "+00:00").timestamp()) if key else 0
            self._seconds[key] = second
        fraction = stamp[19:].rstrip("Z")
        return second + (float(fraction) if fraction.startswith(".") and len(fraction) > 1 else 0)

    def window(self, start: float, end: float, role: str | None = None) -> Counts:
        """Requests received in [start, end) (to a tenth of a second), optionally of one role."""
        out: Counts = Counter()
        for tick in range(math.floor(start * 10), math.floor(end * 10)):
            for request, n in (self.by_tick.get(tick) or {}).items():
                if role is None or request.role == role:
                    out[request] += n
        return out

    def served_seconds(self, start: float, end: float, role: str) -> list[float]:
        """Time inside the API server of `role`'s requests received in [start, end)."""
        low, high = math.floor(start * 10), math.floor(end * 10)
        return [s for tick, s in self.latencies.get(role, ()) if low <= tick < high]


def writes(counts: Counts, resource_prefix: str = "") -> int:
    """Write requests in `counts`, optionally only on resources starting with a prefix."""
    return sum(
        n
        for r, n in counts.items()
        if r.verb in WRITE_VERBS and r.resource.startswith(resource_prefix)
    )


def by_verb_resource(counts: Counts) -> dict[str, int]:
    """{"patch camerastreams": 10000, ...} summed over codes, for reports."""
    out: Counter[str] = Counter()
    for r, n in counts.items():
        out[f"{r.verb} {r.resource}"] += n
    return dict(sorted(out.items(), key=lambda item: (-item[1], item[0])))


def by_code(counts: Counts) -> dict[int, int]:
    out: Counter[int] = Counter()
    for r, n in counts.items():
        out[r.code] += n
    return dict(sorted(out.items()))


def by_role(counts: Counts) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r, n in counts.items():
        out[r.role] += n
    return dict(sorted(out.items(), key=lambda item: -item[1]))
