"""spec.playback against a real kube-apiserver, and `camstream sign` with real RBAC.

- The CRD's CEL rules refuse a signing-key Secret name that is not a
  Kubernetes name (the path-injection shape of issue 8) with the same words
  spec.py uses, and fill in the default key.
- `camstream sign NS/NAME` reads the CameraStream and its namespace's
  Secret with the caller's kubeconfig: the URL it prints verifies with that
  key; an identity that may read CameraStreams but not Secrets is refused
  by Kubernetes, so who may sign is exactly who may read the key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from camstream import playback_tokens as tokens
from camstream.spec import PLAYBACK_SECRET_NAME_MESSAGE

from .conftest import REPO, Cluster
from .kubeconfig import write_kubeconfig

KEY = "cluster-signing-key-0123456789abcdef-xyz"


@pytest.fixture(scope="module")
def crd(control_plane: Cluster) -> Cluster:
    control_plane.kubectl("apply", "-f", str(REPO / "crds" / "camerastream.yaml"))

    def established() -> bool:
        crd = control_plane.kubectl_json("get", "crd", "camerastreams.camstream.io")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    # Polled: `kubectl wait` fails outright while the status has no conditions yet.
    control_plane.wait_for(established, timeout=60, what="the CRD established")
    return control_plane


def stream(name: str, auth: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "camstream.io/v1alpha1",
            "kind": "CameraStream",
            "metadata": {"name": name},
            "spec": {"source": {"protocol": "synthetic"}, "playback": {"auth": auth}},
        }
    )


def sign(kubeconfig: Path, stream_ref: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "camstream_cli", "sign", stream_ref, "--for", "5m"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_the_api_server_refuses_a_bad_key_reference_in_spec_py_words(
    crd: Cluster, namespace: str
) -> None:
    bad = stream("bad", {"mode": "signed", "signingKeySecretRef": {"name": "../../kube-system/x"}})
    result = crd.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert PLAYBACK_SECRET_NAME_MESSAGE in result.stderr, result.stderr
    good = stream("good", {"mode": "signed", "signingKeySecretRef": {"name": "cam-keys.v2"}})
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=good)
    body = crd.kubectl_json("get", "camerastream", "good", "-n", namespace)
    assert body["spec"]["playback"]["auth"]["signingKeySecretRef"] == {
        "name": "cam-keys.v2",
        "key": "signingKey",  # the CRD's default, as spec.py's
    }


def test_camstream_sign_reads_the_key_with_the_callers_rbac(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=stream("door", {"mode": "signed"}))
    crd.kubectl(
        "create", "secret", "generic", "camstream-playback", "-n", namespace,
        f"--from-literal=signingKey={KEY}",
    )  # fmt: skip
    admin = sign(crd.kubeconfig, f"{namespace}/door")
    assert admin.returncode == 0, admin.stderr
    url = admin.stdout.strip()
    assert urlsplit(url).path == f"/streams/{namespace}/door/"
    token = parse_qs(urlsplit(url).query)["token"][0]
    grant = tokens.verify(KEY.encode(), token, namespace=namespace, name="door", now=time.time())
    assert grant.name == "door"

    # Someone who may read CameraStreams here, and not Secrets.
    crd.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    crd.kubectl(
        "create", "role", "streams-reader", "--verb=get",
        "--resource=camerastreams.camstream.io", "-n", namespace,
    )  # fmt: skip
    crd.kubectl(
        "create", "rolebinding", "viewer-reads", "--role=streams-reader",
        f"--serviceaccount={namespace}:viewer", "-n", namespace,
    )  # fmt: skip
    viewer_token = crd.kubectl("create", "token", "viewer", "-n", namespace).stdout.strip()
    config = write_kubeconfig(
        tmp_path / "viewer.kubeconfig",
        crd.plane.server,
        crd.plane.ca_cert,
        user="viewer",
        token=viewer_token,
    )
    refused = sign(config, f"{namespace}/door")
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"Secret {namespace}/camstream-playback" in refused.stderr
    assert "you may not read it (RBAC)" in refused.stderr
    assert KEY not in refused.stderr
