"""etcd + kube-apiserver for the fleet benchmark, with an audit log.

Who calls this: scenario.py, once per run (a fresh cluster per N, so etcd's
size and the API server's memory belong to that N alone).

It reuses tests/cluster/controlplane.ControlPlane with two differences:

- no kube-controller-manager or kube-scheduler: the fake worker pods are API
  objects bound to a node that does not exist, so nothing must schedule,
  adopt, evict or mark them NotReady, and neither process would add anything
  but load;
- an audit log (JSON lines, Metadata level, one line per request, no request
  or response bodies): the only place where the API server says *who* sent
  each request, which is how operator requests are told apart from the
  bench's own.

Audit mode: `batch` by default. The log backend's batch mode buffers events
and writes them from one goroutine, so a request never waits on the file; it
drops events only when its buffer is full, which `audit_health` checks after
the run (buffer raised to 200,000 events). `blocking` writes each event
before the request completes. bench/README.md gives the measured overhead of
both against no audit log.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from pathlib import Path

from tests.cluster.controlplane import ControlPlane, build_binaries

# Health probes and metrics scrapes are not requests anyone made of the API.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One line per request: ResponseComplete (ResponseStarted for watches, which
    # complete only when they end). RequestReceived would double the log.
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "None",
            "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/metrics", "/version"],
        },
        {"level": "Metadata"},
    ],
}
AUDIT_LOG = "audit.jsonl"


def audit_flags(work_dir: Path, mode: str) -> tuple[str, ...]:
    """kube-apiserver flags for an audit log in `work_dir` (none for mode "none")."""
    if mode == "none":
        return ()
    policy = work_dir / "audit-policy.json"
    work_dir.mkdir(parents=True, exist_ok=True)
    policy.write_text(json.dumps(AUDIT_POLICY, indent=2))
    flags = [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={work_dir / AUDIT_LOG}",
        "--audit-log-format=json",
        f"--audit-log-mode={mode}",
        # lumberjack rotates at 100 MB when maxsize is 0; 100k streams log
        # about 1 GB, read as one file.
        "--audit-log-maxsize=1000000",
    ]
    if mode == "batch":
        flags.append("--audit-log-batch-buffer-size=200000")
    return tuple(flags)


def start(work_dir: Path, audit_mode: str, bin_dir: Path | None = None) -> ControlPlane:
    """A running etcd + kube-apiserver (admin kubeconfig at plane.kubeconfig)."""
    plane = ControlPlane(
        bin_dir=bin_dir or build_binaries(),
        work_dir=work_dir,
        log_dir=work_dir / "logs",
        apiserver_flags=audit_flags(work_dir, audit_mode),
        controllers=False,
    )
    plane.start()
    return plane


def audit_path(plane: ControlPlane) -> Path:
    return plane.work_dir / AUDIT_LOG


def _admin_context(plane: ControlPlane) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plane.ca_cert))
    admin = plane.pki.clients["admin"]
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return context


def apiserver_metrics(plane: ControlPlane) -> str:
    """The API server's /metrics text (as the admin)."""
    request = urllib.request.Request(f"{plane.server}/metrics")
    with urllib.request.urlopen(request, context=_admin_context(plane), timeout=30) as response:
        return str(response.read().decode())


def etcd_metrics(plane: ControlPlane) -> str:
    with urllib.request.urlopen(f"{plane.etcd_url}/metrics", timeout=30) as response:
        return str(response.read().decode())


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of metric `name` (all label sets) in Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def audit_health(plane: ControlPlane) -> dict[str, float]:
    """Audit events the API server produced and failed to write (drops)."""
    text = apiserver_metrics(plane)
    log = (plane.log_path("kube-apiserver")).read_text(errors="replace")
    return {
        "events": metric_sum(text, "apiserver_audit_event_total"),
        "errors": metric_sum(text, "apiserver_audit_error_total"),
        "queue_blocked_lines": float(log.count("audit buffer queue blocked")),
    }
