"""Container probes (readiness, liveness) as the kubelet runs them.

Called by nodeagent.py's pod runners. `ProbeState` holds the schedule and the
success/failure counting of one probe (pure: time is passed in); `run_probe`
performs one check (httpGet, tcpSocket or exec) against the pod's address.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ProbeState", "run_probe"]

JSON = dict[str, Any]


def _port(value: int | str, container: JSON) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports", []):
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe port {value!r} not declared by the container")


def run_probe(probe: JSON, container: JSON, pod_ip: str, env: Mapping[str, str]) -> bool:
    """One probe attempt; True on success. Never raises for a failed check."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            host = spec.get("host") or pod_ip
            port = _port(spec["port"], container)
            conn: http.client.HTTPConnection
            if spec.get("scheme", "HTTP").upper() == "HTTPS":
                # The kubelet does not verify probe certificates either.
                conn = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=ssl._create_unverified_context()
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
                conn.request("GET", spec.get("path", "/"), headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= status < 400
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            address = (spec.get("host") or pod_ip, _port(spec["port"], container))
            with socket.create_connection(address, timeout=timeout):
                return True
        if "exec" in probe:
            result = subprocess.run(
                probe["exec"]["command"],
                env=dict(env),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            return result.returncode == 0
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired, ValueError):
        return False
    return False  # grpc probes are not supported: never succeed silently


@dataclass
class ProbeState:
    """Schedule and thresholds of one probe on one container run.

    `result` starts as `initial` (False for readiness, True for liveness) and
    flips only after successThreshold successes or failureThreshold failures
    in a row, as the kubelet's prober does.
    """

    probe: JSON
    started_at: float
    result: bool
    _successes: int = 0
    _failures: int = 0
    _next_at: float = 0.0

    def __post_init__(self) -> None:
        self._next_at = self.started_at + float(self.probe.get("initialDelaySeconds", 0))

    def due(self, now: float) -> bool:
        return now >= self._next_at

    def record(self, ok: bool, now: float) -> bool:
        """Account one attempt made at `now`; return the (possibly new) result."""
        self._next_at = now + float(self.probe.get("periodSeconds", 10))
        if ok:
            self._successes += 1
            self._failures = 0
            if self._successes >= int(self.probe.get("successThreshold", 1)):
                self.result = True
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= int(self.probe.get("failureThreshold", 3)):
                self.result = False
        return self.result
