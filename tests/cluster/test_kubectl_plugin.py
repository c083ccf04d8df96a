"""`kubectl camstream` against a real kube-apiserver, through kubectl's own plugin lookup.

The operator and two workers run as pods (tests/cluster/test_operator.py's
fixtures); kubectl finds the `kubectl-camstream` executable the package
installs on PATH, as it would on a user's machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from camstream import ring

from .conftest import Cluster
from .test_operator import WORKERS, P, _apply, _ring, _start_workers, _stream, crd, operator

_FIXTURES = (crd, operator)  # imported for pytest; named here so linters keep them


def _plugin(cluster: Cluster, *args: str, check: bool = True) -> Any:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["kubectl", "camstream", *args],
        capture_output=True, text=True, env={**env, "KUBECONFIG": str(cluster.kubeconfig)},
        timeout=60, check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_ring_why_and_open(crd: Cluster, operator: str, tmp_path: Path) -> None:
    ns = operator
    _start_workers(crd, ns, 2, tmp_path)
    _apply(crd, ns, _stream("lobby"))
    bad = _stream("broken")
    bad["spec"]["source"] = {"protocol": "rtsp", "url": "rtsp://admin:hunter2@127.0.0.1/x"}
    _apply(crd, ns, bad)
    workers = {f"{WORKERS}-0", f"{WORKERS}-1"}

    def settled_and_live() -> Any:
        doc = _ring(crd, ns)
        body = crd.kubectl_json("get", "stream", "lobby", "-n", ns)
        live = (body.get("status") or {}).get("phase") == "Live"
        return doc if live and set(doc.serving) == workers and not doc.handoffs else None

    doc = crd.wait_for(settled_and_live, 150, 1.0, "ring on two workers, lobby Live")

    out = _plugin(crd, "-n", ns, "ring").stdout
    assert out.splitlines()[0].startswith(f"ring v{doc.version}: {P} partitions, 2 workers")
    for worker in workers:
        row = next(line for line in out.splitlines() if line.startswith(worker + " "))
        assert row.split()[1] == "yes"
        assert int(row.split()[3]) == list(doc.serving).count(worker)

    owner = doc.serving[ring.partition_of(f"{ns}/lobby", P)]
    why = _plugin(crd, "-n", ns, "why", f"{ns}/lobby").stdout
    assert why.startswith(f"{ns}/lobby: Live") and f"served by {owner}" in why
    assert "Live=True" in why

    crd.wait_for(
        lambda: (
            (crd.kubectl_json("get", "stream", "broken", "-n", ns).get("status") or {}).get("phase")
            == "Invalid"
        ),
        60,
        what="broken marked Invalid",
    )
    why_bad = _plugin(crd, "-n", ns, "why", f"{ns}/broken").stdout
    assert "Invalid" in why_bad and "spec.source.url" in why_bad and "InvalidSpec" in why_bad
    assert "hunter2" not in why_bad

    crd.kubectl("create", "service", "clusterip", "camstream-playback", "--tcp=80:8080", "-n", ns)
    opened = _plugin(crd, "-n", ns, "open", f"{ns}/lobby").stdout.splitlines()
    assert opened[0] == f"kubectl -n {ns} port-forward svc/camstream-playback 8080:80"
    assert opened[1] == f"http://127.0.0.1:8080/streams/{ns}/lobby/"

    missing = _plugin(crd, "-n", ns, "why", f"{ns}/nope", check=False)
    assert missing.returncode == 1 and f"no CameraStream {ns}/nope" in missing.stderr
    elsewhere = _plugin(crd, "-n", "default", "ring", check=False)
    assert elsewhere.returncode == 1
    assert "no camstream ring in namespace default" in elsewhere.stderr
