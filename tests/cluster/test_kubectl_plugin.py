"""`kubectl camstream` against a real kube-apiserver, through kubectl's own plugin lookup.

The operator and two workers run as pods (tests/cluster/test_operator.py's
fixtures); kubectl finds the `kubectl-camstream` executable the package
installs on PATH, as it would on a user's machine. `open` of a stream that
asks for signed URLs prints URLs whose token verifies with the namespace's
key, read with the caller's RBAC: an identity that may read everything
`open` reads but that Secret gets one line naming it, no traceback, no key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from camstream import playback_tokens as tokens
from camstream import ring

from .conftest import Cluster
from .kubeconfig import write_kubeconfig
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

    _open_signed(crd, ns, tmp_path)

    missing = _plugin(crd, "-n", ns, "why", f"{ns}/nope", check=False)
    assert missing.returncode == 1 and f"no CameraStream {ns}/nope" in missing.stderr
    elsewhere = _plugin(crd, "-n", "default", "ring", check=False)
    assert elsewhere.returncode == 1
    assert "no camstream ring in namespace default" in elsewhere.stderr


KEY = "plugin-open-signing-key-5e6f7a8b9c0d1e2f-xyz"


def _open_signed(crd: Cluster, ns: str, tmp_path: Path) -> None:
    vault = _stream("vault", enabled=False, playback={"auth": {"mode": "signed"}})
    _apply(crd, ns, vault)  # paused: only its spec matters here
    crd.kubectl(
        "create", "secret", "generic", "camstream-playback", "-n", ns,
        f"--from-literal=signingKey={KEY}",
    )  # fmt: skip
    opened = _plugin(crd, "-n", ns, "open", f"{ns}/vault", "--for", "15m").stdout.splitlines()
    page, playlist = urlsplit(opened[1]), urlsplit(opened[2])
    assert page.path == f"/streams/{ns}/vault/"
    assert playlist.path == f"/streams/{ns}/vault/index.m3u8"
    assert opened[3] == "signed URLs, valid for 15m"
    for url in (page, playlist):
        token = parse_qs(url.query)["token"][0]
        grant = tokens.verify(KEY.encode(), token, namespace=ns, name="vault", now=time.time())
        assert grant.name == "vault" and grant.expires <= time.time() + 15 * 60 + 1
    assert KEY not in "\n".join(opened)

    # Someone who may read everything `open` reads, except Secrets.
    crd.kubectl("create", "serviceaccount", "looker", "-n", ns)
    crd.kubectl(
        "create", "role", "looker", "--verb=get,list",
        "--resource=camerastreams.camstream.io,configmaps,services,ingresses.networking.k8s.io,pods",
        "-n", ns,
    )  # fmt: skip
    crd.kubectl(
        "create", "rolebinding", "looker", "--role=looker", f"--serviceaccount={ns}:looker",
        "-n", ns,
    )  # fmt: skip
    config = write_kubeconfig(
        tmp_path / "looker.kubeconfig", crd.plane.server, crd.plane.ca_cert, user="looker",
        token=crd.kubectl("create", "token", "looker", "-n", ns).stdout.strip(),
    )  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    refused = subprocess.run(
        ["kubectl", "camstream", "-n", ns, "open", f"{ns}/vault"],
        capture_output=True, text=True, env={**env, "KUBECONFIG": str(config)},
        timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and refused.stdout == "", refused
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert f"Secret {ns}/camstream-playback (key signingKey)" in line, line
    assert "forbidden (RBAC)" in line and f"camstream sign {ns}/vault" in line, line
    assert KEY not in line
    # The same identity still opens a public stream: the Secret is read only when needed.
    public = subprocess.run(
        ["kubectl", "camstream", "-n", ns, "open", f"{ns}/lobby"],
        capture_output=True, text=True, env={**env, "KUBECONFIG": str(config)},
        timeout=60, check=False,
    )  # fmt: skip
    assert public.returncode == 0, public.stderr
    assert public.stdout.splitlines()[1] == f"http://127.0.0.1:8080/streams/{ns}/lobby/"
