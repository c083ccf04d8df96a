"""The operator and cluster-mode workers against a real kube-apiserver.

Runs the operator (a Deployment) and the workers (a StatefulSet) as pods of
the local node agent, each with its own ServiceAccount token and the RBAC
rules the chart ships (nothing more), and drives them with kubectl:

- the API server refuses what the schema and its CEL rules forbid;
- the operator's admission webhook labels each CameraStream with its
  partitions in the create request itself; streams it missed (webhook
  unreachable: creates never wait for it) are labelled by the fallback
  labeller; the operator writes the ring ConfigMap and no stream status;
- workers pick up their partitions and bring synthetic streams Live, writing
  the whole status (the serving worker, the phase, the playback path); a spec
  refused beyond the schema is marked Invalid by its worker, with a readable
  condition and one Event; deleting a stream stops it and removes its files;
- restarting the operator changes nothing that was right.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camstream import partition_labels, ring
from camstream.handoff_codec import decode_doc
from camstream.wire import decode_ranges

from . import webhook
from .conftest import REPO, Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

PY = sys.executable
P = 16
RING = "camstream-ring"
WORKERS = "camstream-worker"
# The test bed's node may keep the not-ready taint (no node lifecycle
# controller runs to lift it); our pods tolerate it rather than wait forever.
TOLERATIONS = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]

OPERATOR_RULES_STREAMS = [
    {"apiGroups": ["camstream.io"], "resources": ["camerastreams"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
OPERATOR_RULES_RELEASE = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"],
     "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
WORKER_RULES_STREAMS = [
    {"apiGroups": ["camstream.io"], "resources": ["camerastreams"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["camstream.io"], "resources": ["camerastreams/status"],
     "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
WORKER_RULES_RELEASE = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "create", "update", "patch"]},
]  # fmt: skip


def _apply(cluster: Cluster, namespace: str | None, manifest: dict[str, Any]) -> None:
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    cluster.kubectl(*args, input=json.dumps(manifest))


def _get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _grant(cluster: Cluster, namespace: str, account: str, streams: list, release: list) -> None:  # type: ignore[type-arg]
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster_role = f"{namespace}-{account}"
    _apply(cluster, None, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": cluster_role}, "rules": streams,
    })  # fmt: skip
    _apply(cluster, None, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": cluster_role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    })  # fmt: skip
    _apply(cluster, namespace, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": account}, "rules": release,
    })  # fmt: skip
    _apply(cluster, namespace, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    })  # fmt: skip


def _stream(name: str, **spec: Any) -> dict[str, Any]:
    # A tiny synthetic camera keeps two shared cores free for the rest.
    source = {
        "protocol": "synthetic",
        "synthetic": {"width": 160, "height": 90, "fps": 10, "bitrateKbps": 100, "audio": False},
    }
    return {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": name},
        "spec": {"source": source, "hls": {"segmentSeconds": 1, "windowSegments": 4}, **spec},
    }


def _ring(cluster: Cluster, namespace: str) -> Any:
    cm = _get(cluster, namespace, "configmap", RING)
    return decode_doc(cm["data"]) if cm else None


@pytest.fixture(scope="module")
def crd(control_plane: Cluster) -> Cluster:
    control_plane.kubectl("apply", "-f", str(REPO / "crds" / "camerastream.yaml"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/camerastreams.camstream.io", "--timeout=60s"
    )
    return control_plane


def _start_operator(
    cluster: Cluster, namespace: str, *, webhook_certs: Path | None = None, replicas: int = 1
) -> None:
    """The operator Deployment, with the chart's operator RBAC only."""
    _grant(cluster, namespace, "camstream-operator", OPERATOR_RULES_STREAMS, OPERATOR_RULES_RELEASE)
    command = [
        PY, "-m", "camstream_cli", "operator", "--namespace", "$(POD_NAMESPACE)",
        "--workers-statefulset", WORKERS, "--ring-configmap", RING, "--partitions", str(P),
        "--liveness-port", "8081", "--lease-name", "camstream-operator",
        # Each test is its own release: serve only the test's namespace.
        "--watch-namespace", "$(POD_NAMESPACE)",
    ]  # fmt: skip
    if webhook_certs is not None:
        command += ["--webhook-cert-dir", str(webhook_certs), "--webhook-port", str(webhook.PORT)]
    _apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "camstream-operator"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "camstream-operator"}},
            "template": {
                "metadata": {"labels": {"app": "camstream-operator"}},
                "spec": {
                    "serviceAccountName": "camstream-operator",
                    "tolerations": TOLERATIONS,
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{"name": "operator", "image": "camstream", "command": command}],
                },
            },
        },
    })  # fmt: skip
    cluster.wait_for(lambda: _get(cluster, namespace, "configmap", RING), 90, what="ring ConfigMap")


@pytest.fixture
def operator(crd: Cluster, namespace: str) -> Iterator[str]:
    """The operator (one replica) without its webhook: the fallback labeller labels."""
    _start_operator(crd, namespace)
    yield namespace
    crd.kubectl("delete", "deployment", "camstream-operator", "-n", namespace, "--wait=false")


@pytest.fixture
def operator_with_webhook(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The operator serving its admission webhook, registered for the test namespace.

    The certificate is for the pod's address, known once it runs; the operator
    waits for the certificate files as it would for cert-manager's Secret.
    """
    certs = tmp_path / "webhook-certs"
    _start_operator(crd, namespace, webhook_certs=certs)
    pod = crd.wait_for(lambda: _operator_pod(crd, namespace), 60, what="operator pod IP")
    address = pod["status"]["podIP"]
    webhook.issue_cert(crd, address, certs)
    config = webhook.install(crd, namespace, address)
    yield namespace
    webhook.remove(crd, config)
    crd.kubectl("delete", "deployment", "camstream-operator", "-n", namespace, "--wait=false")


def _start_workers(
    cluster: Cluster,
    namespace: str,
    replicas: int,
    hls_root: Path,
    *,
    push_via_edge: bool = False,
    srt_port: int | None = None,
) -> None:
    """`push_via_edge`: pushed cameras come through the ingest edge (`_start_edge`).

    `srt_port`: the workers also take SRT publishers on that UDP port (off otherwise).
    """
    _grant(cluster, namespace, "camstream-worker", WORKER_RULES_STREAMS, WORKER_RULES_RELEASE)
    command = [
        PY, "-m", "camstream_cli", "worker", "--http-port", "8080", "--rtmp-port", "1935",
        "--hls-dir", f"{hls_root}/$(POD_NAME)", "--ring-configmap", RING,
        "--operator-namespace", "$(POD_NAMESPACE)", "--leave-seconds", "20",
        "--watch-namespace", "$(POD_NAMESPACE)",
    ]  # fmt: skip
    if srt_port is not None:
        command += ["--srt-port", str(srt_port)]
    # The workers sign a handoff's fence with it (the chart makes one per release).
    env = [{"name": "CAMSTREAM_PEER_TOKEN", "value": PEER_TOKEN}]
    if push_via_edge:
        command.append("--push-via-edge")
        env.append({"name": "CAMSTREAM_EDGE_TOKEN", "value": EDGE_TOKEN})
    _apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": WORKERS},
        "spec": {
            "replicas": replicas,
            "serviceName": WORKERS,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": WORKERS}},
            "template": {
                "metadata": {"labels": {"app": WORKERS}},
                "spec": {
                    "serviceAccountName": "camstream-worker",
                    "tolerations": TOLERATIONS,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "worker", "image": "camstream", "command": command, "env": env,
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                           "periodSeconds": 1, "timeoutSeconds": 5},
                    }],
                },
            },
        },
    })  # fmt: skip


EDGE = "camstream-edge"
EDGE_HTTP = 8081
# The secret with which the edge vouches for its cameras' addresses to the
# workers (protocols/rtmp/forwarded.py); the chart generates one per release.
EDGE_TOKEN = "churn-edge-token-0123456789"
PEER_TOKEN = "churn-peer-token-0123456789"
# What the edge reads: the ring ConfigMap, nothing else (the owner checks keys).
EDGE_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
]  # fmt: skip
# With an SRT port the edge also reads the CameraStreams its SRT cameras name
# and the Secrets their passphrases come from (edge/passphrases.py).
EDGE_RULES_SRT = [
    {"apiGroups": ["camstream.io"], "resources": ["camerastreams"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]  # fmt: skip


def _start_edge(
    cluster: Cluster,
    namespace: str,
    replicas: int = 1,
    drain: float = 10.0,
    *,
    srt_port: int | None = None,
) -> None:
    """The ingest edge Deployment (camstream edge) in front of the workers' RTMP port;
    `srt_port`: also the one SRT port, relaying to the workers' SRT port (the same number)."""
    _grant(cluster, namespace, EDGE, EDGE_RULES_SRT if srt_port is not None else [], EDGE_RULES)
    command = [
        PY, "-m", "camstream_cli", "edge", "--rtmp-port", "1935", "--worker-rtmp-port", "1935",
        "--http-port", str(EDGE_HTTP), "--ring-configmap", RING,
        "--operator-namespace", "$(POD_NAMESPACE)", "--drain-seconds", str(drain),
    ]  # fmt: skip
    if srt_port is not None:
        command += ["--srt-port", str(srt_port), "--worker-srt-port", str(srt_port)]
    _apply(cluster, namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": EDGE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": EDGE}},
            "template": {
                "metadata": {"labels": {"app": EDGE}},
                "spec": {
                    "serviceAccountName": EDGE,
                    "tolerations": TOLERATIONS,
                    "terminationGracePeriodSeconds": int(drain) + 5,
                    "containers": [{
                        "name": "edge", "image": "camstream", "command": command,
                        "env": [{"name": "CAMSTREAM_EDGE_TOKEN", "value": EDGE_TOKEN}],
                        "ports": [{"name": "http", "containerPort": EDGE_HTTP}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                           "periodSeconds": 1, "timeoutSeconds": 5},
                    }],
                },
            },
        },
    })  # fmt: skip


def test_api_server_rejects_what_the_schema_forbids(crd: Cluster, namespace: str) -> None:
    no_key = _stream("pusher")
    no_key["spec"]["source"] = {"protocol": "rtmp"}
    result = crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(no_key), check=False)
    assert result.returncode != 0
    assert "streamKeySecretRef" in result.stderr
    bad_range = _stream("fast")
    bad_range["spec"]["hls"] = {"segmentSeconds": 99}
    result = crd.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(bad_range), check=False
    )
    assert result.returncode != 0 and "segmentSeconds" in result.stderr


SRT_PASSPHRASE = "srt-secret-0123456789"  # never stored: the apply is refused


def _srt_stream(name: str, **srt: Any) -> dict[str, Any]:
    body = _stream(name)
    body["spec"]["source"] = {"protocol": "srt", "srt": srt}
    return body


def test_api_server_rejects_srt_sources_the_schema_forbids(crd: Cluster, namespace: str) -> None:
    """spec.source.srt's schema and CEL rules, as a real API server applies them."""

    def refused(body: dict[str, Any], *words: str) -> str:
        result = crd.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
        )
        assert result.returncode != 0, f"{body['metadata']['name']} was taken"
        for word in words:
            assert word in result.stderr, result.stderr
        # Refused at admission: nothing stored, so no worker ever sees it.
        assert _get(crd, namespace, "camerastream", body["metadata"]["name"]) is None
        return str(result.stderr)

    secret = {"name": "cam-srt"}
    refused(_srt_stream("srt-no-passphrase"), "passphraseSecretRef")
    refused(_srt_stream("srt-empty", passphraseSecretRef={}), "passphraseSecretRef", "name")
    refused(
        _srt_stream("srt-bad-secret", passphraseSecretRef={"name": "../kube-system"}),
        "must name a Secret",
    )
    for latency in (19, 8001, -1):
        refused(_srt_stream("srt-latency", passphraseSecretRef=secret, latencyMs=latency),
                "latencyMs")  # fmt: skip
    for key_length in (0, 8, 20, 64):
        refused(_srt_stream("srt-key", passphraseSecretRef=secret, keyLength=key_length),
                "keyLength")  # fmt: skip
    # A pull url carrying the passphrase: refused before it is stored, and the
    # refusal does not echo it back.
    for query in (f"?passphrase={SRT_PASSPHRASE}", f"?latency=200&PassPhrase={SRT_PASSPHRASE}"):
        leaky = _srt_stream("srt-leaky")
        leaky["spec"]["source"]["url"] = "srt://127.0.0.1:9000" + query
        stderr = refused(leaky, "spec.source.url", "the passphrase must not be written in the url")
        assert SRT_PASSPHRASE not in stderr

    # What the rules let through, with the schema's defaults filled in.
    pushed = _srt_stream("srt-pushed", passphraseSecretRef=secret)
    pulled = _srt_stream("srt-pulled", latencyMs=8000, keyLength=32)
    pulled["spec"]["source"]["url"] = "srt://127.0.0.1:9000?latency=200#passphrase"
    edges = _srt_stream("srt-edges", passphraseSecretRef={**secret, "key": "pp"}, latencyMs=20)
    for body in (pushed, pulled, edges):
        _apply(crd, namespace, body)
    stored = _get(crd, namespace, "camerastream", "srt-pushed")
    assert stored is not None
    assert stored["spec"]["source"]["srt"] == {
        "passphraseSecretRef": {"name": "cam-srt", "key": "passphrase"},
        "latencyMs": 120,
        "keyLength": 16,
    }
    stored = _get(crd, namespace, "camerastream", "srt-pulled")
    assert stored is not None and stored["spec"]["source"]["srt"] == {
        "latencyMs": 8000, "keyLength": 32
    }  # fmt: skip
    stored = _get(crd, namespace, "camerastream", "srt-edges")
    assert stored is not None and stored["spec"]["source"]["srt"]["latencyMs"] == 20


def _operator_pod(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=camstream-operator")
    running = [p for p in pods["items"] if (p.get("status") or {}).get("podIP")]
    return running[0] if running else None


def _labels_of(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    body = _get(cluster, namespace, "camerastream", name) or {}
    return dict((body.get("metadata") or {}).get("labels") or {})


def _labelled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = _get(cluster, namespace, "camerastream", name) or {}
    labels = (body.get("metadata") or {}).get("labels") or {}
    want = partition_labels.labels_for(namespace, name, P)
    return body if all(labels.get(k) == v for k, v in want.items()) else None


def test_operator_labels_what_the_webhook_missed_and_writes_no_status(
    crd: Cluster, operator: str
) -> None:
    ns = operator
    doc = _ring(crd, ns)
    assert doc.partitions == P and doc.table is None  # no worker yet: an empty ring
    _apply(crd, ns, _stream("cam-a"))
    body = crd.wait_for(lambda: _labelled(crd, ns, "cam-a"), 60, what="cam-a labelled")
    # One label per ring size it may grow to, each the partition in that ring.
    labels = body["metadata"]["labels"]
    assert set(labels) == {partition_labels.label_key(s) for s in partition_labels.sizes_from(P)}
    partition = ring.partition_of(f"{ns}/cam-a", P)
    assert labels[partition_labels.label_key(P)] == str(partition)
    assert "status" not in body  # the operator writes no status: the serving worker does
    # The label selector workers use finds it.
    selector = partition_labels.selectors(P, [partition])[0]
    names = crd.kubectl("get", "streams", "-n", ns, "-l", selector, "-o", "name").stdout.split()
    assert names == ["camerastream.camstream.io/cam-a"]
    # A label removed by hand (an apply that dropped it) is put back.
    crd.kubectl("label", "stream", "cam-a", "-n", ns, f"{partition_labels.label_key(P)}-")
    crd.wait_for(lambda: _labelled(crd, ns, "cam-a"), 60, what="cam-a labelled again")
    # Steady state: nothing is rewritten once right.
    before = _get(crd, ns, "camerastream", "cam-a")["metadata"]["resourceVersion"]
    time.sleep(3)
    assert _get(crd, ns, "camerastream", "cam-a")["metadata"]["resourceVersion"] == before
    events = crd.kubectl_json("get", "events", "-n", ns)["items"]
    assert not [e for e in events if e["involvedObject"].get("kind") == "CameraStream"]


def test_webhook_labels_streams_in_their_create_request(
    crd: Cluster, operator_with_webhook: str
) -> None:
    ns = operator_with_webhook

    # The webhook answers once the operator has read the ring.
    def labelled_at_create() -> dict[str, Any] | None:
        name = f"probe-{time.monotonic_ns()}"
        out = crd.kubectl("create", "-n", ns, "-o", "json", "-f", "-",
                          input=json.dumps(_stream(name)))  # fmt: skip
        created = json.loads(out.stdout)
        return created if created["metadata"].get("labels") else None

    crd.wait_for(labelled_at_create, 60, interval=1.0, what="the webhook answering")
    out = crd.kubectl(
        "create", "-n", ns, "-o", "json", "-f", "-", input=json.dumps(_stream("cam-w"))
    )
    created = json.loads(out.stdout)
    assert created["metadata"]["labels"] == partition_labels.labels_for(ns, "cam-w", P)
    time.sleep(3)  # and nobody writes it again
    now = _get(crd, ns, "camerastream", "cam-w")
    assert now["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    # The operator away: creates do not wait for it (failure policy Ignore) and
    # the stream is labelled once it is back.
    crd.kubectl("scale", "deployment", "camstream-operator", "-n", ns, "--replicas=0")
    crd.wait_for(
        lambda: (
            not crd.kubectl_json("get", "pods", "-n", ns, "-l", "app=camstream-operator")["items"]
        ),
        60,
        what="operator gone",
    )
    started = time.monotonic()
    _apply(crd, ns, _stream("cam-x"))
    assert time.monotonic() - started < 10
    assert not _labels_of(crd, ns, "cam-x")
    crd.kubectl("scale", "deployment", "camstream-operator", "-n", ns, "--replicas=1")
    crd.wait_for(lambda: _labelled(crd, ns, "cam-x"), 90, what="cam-x labelled by the operator")


def test_workers_run_streams_and_delete_stops(crd: Cluster, operator: str, tmp_path: Path) -> None:
    ns = operator
    _start_workers(crd, ns, 2, tmp_path)
    names = [f"cam-{i}" for i in range(4)]
    for name in names:
        _apply(crd, ns, _stream(name))

    def all_live() -> list[dict[str, Any]] | None:
        items = crd.kubectl_json("get", "streams", "-n", ns)["items"]
        live = [i for i in items if (i.get("status") or {}).get("phase") == "Live"]
        return items if len(live) == len(names) else None

    workers = {f"{WORKERS}-0", f"{WORKERS}-1"}

    def settled() -> Any:
        doc = _ring(crd, ns)
        return doc if set(doc.serving) == workers and doc.handoffs == () else None

    # The first worker up may take everything until the second joins: wait for both.
    doc = crd.wait_for(settled, 150, interval=1.0, what="ring served by both workers")
    items = crd.wait_for(all_live, 150, interval=1.0, what="4 streams Live")

    def reported_by_owner() -> Any:
        items = crd.kubectl_json("get", "streams", "-n", ns)["items"]
        return (
            all(
                (i.get("status") or {}).get("worker")
                == doc.serving[ring.partition_of(f"{ns}/{i['metadata']['name']}", P)]
                for i in items
            )
            and items
        )

    items = crd.wait_for(reported_by_owner, 30, interval=0.5, what="status.worker = owner")
    assert sorted(list(doc.serving).count(w) for w in workers) == [P // 2, P // 2]
    for item in items:
        meta, status = item["metadata"], item["status"]
        partition = ring.partition_of(f"{ns}/{meta['name']}", P)
        assert status["worker"] == doc.serving[partition]
        live = {c["type"]: c["status"] for c in status["conditions"]}
        assert live["Live"] == "True" and live["Valid"] == "True"
        assert status["playbackPath"] == f"/streams/{ns}/{meta['name']}/index.m3u8"
        assert status["partition"] == partition
    # Each pod carries the partitions it serves.
    for w in workers:
        pod = _get(crd, ns, "pod", w)
        served = decode_ranges(pod["metadata"]["annotations"]["camstream.io/partitions"])
        assert served == {p for p, o in enumerate(doc.serving) if o == w}
    # Any worker answers for any stream: ask the one that does not own cam-0.
    owner = doc.serving[ring.partition_of(f"{ns}/cam-0", P)]
    other = (workers - {owner}).pop()
    other_ip = doc.addresses[other]
    url = f"http://{other_ip}:8080/streams/{ns}/cam-0/index.m3u8"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and "#EXTM3U" in response.read().decode()
    # Delete: the owner stops the pipeline and removes the files.
    playlist = tmp_path / owner / ns / "cam-0" / "index.m3u8"
    crd.wait_for(playlist.exists, 30, 0.5, "cam-0 playlist on disk")
    crd.kubectl("delete", "stream", "cam-0", "-n", ns)
    crd.wait_for(lambda: not playlist.parent.exists(), 60, what="cam-0 files removed")
    with urllib.request.urlopen(f"http://{doc.addresses[owner]}:8080/api/streams", timeout=10) as r:
        running = json.loads(r.read())
    assert "cam-0" not in json.dumps(running)
    # Steady state writes nothing: neither ring nor streams change while all is well.
    ring_version = _get(crd, ns, "configmap", RING)["metadata"]["resourceVersion"]
    current = crd.kubectl_json("get", "streams", "-n", ns)["items"]
    versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in current}
    time.sleep(5)
    assert _get(crd, ns, "configmap", RING)["metadata"]["resourceVersion"] == ring_version
    now = crd.kubectl_json("get", "streams", "-n", ns)["items"]
    assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in now} == versions

    # An operator restart changes nothing that was right.
    pods = crd.kubectl_json("get", "pods", "-n", ns, "-l", "app=camstream-operator")["items"]
    old = pods[0]["metadata"]["name"]
    crd.kubectl("delete", "pod", old, "-n", ns, "--wait=false")

    def new_leader() -> str | None:
        lease = _get(crd, ns, "lease", "camstream-operator") or {}
        holder = (lease.get("spec") or {}).get("holderIdentity")
        return holder if holder and holder != old else None

    crd.wait_for(new_leader, 90, interval=1.0, what="a new operator leading")
    time.sleep(4)
    assert _get(crd, ns, "configmap", RING)["metadata"]["resourceVersion"] == ring_version
    now = crd.kubectl_json("get", "streams", "-n", ns)["items"]
    assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in now} == versions


def test_pause_resume_and_degraded_source(crd: Cluster, operator: str, tmp_path: Path) -> None:
    ns = operator
    _start_workers(crd, ns, 1, tmp_path)
    _apply(crd, ns, _stream("cam-p"))
    dead = _stream("cam-dead")
    # Nothing listens on port 9 of loopback: a camera that is down.
    dead["spec"]["source"] = {
        "protocol": "rtsp",
        "url": "rtsp://127.0.0.1:9/stream",
        "stallTimeoutSeconds": 2,
    }
    _apply(crd, ns, dead)

    def phase(name: str, want: str) -> Any:
        body = _get(crd, ns, "camerastream", name) or {}
        return body if (body.get("status") or {}).get("phase") == want else None

    crd.wait_for(lambda: phase("cam-p", "Live"), 120, 1.0, "cam-p Live")
    worker = f"{WORKERS}-0"
    playlist = tmp_path / worker / ns / "cam-p" / "index.m3u8"
    crd.wait_for(playlist.exists, 30, 0.5, "cam-p playlist on disk")

    body = crd.wait_for(lambda: phase("cam-dead", "Reconnecting"), 60, 0.5, "cam-dead retrying")
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Degraded"]["status"] == "True"
    assert conditions["Live"]["status"] == "False"
    assert body["status"]["worker"] == worker

    # Pause: the stream stops and its files go; the resource stays, marked Stopped.
    crd.kubectl("patch", "stream", "cam-p", "-n", ns, "--type=merge", "-p",
                '{"spec": {"enabled": false}}')  # fmt: skip
    body = crd.wait_for(lambda: phase("cam-p", "Stopped"), 60, 0.5, "cam-p Stopped")
    assert body["status"]["reason"] == "Disabled"
    crd.wait_for(lambda: not playlist.exists(), 30, 0.5, "cam-p files removed")
    # Resume: Live again.
    crd.kubectl("patch", "stream", "cam-p", "-n", ns, "--type=merge", "-p",
                '{"spec": {"enabled": true}}')  # fmt: skip
    crd.wait_for(lambda: phase("cam-p", "Live"), 60, 0.5, "cam-p Live again")

    # Beyond the schema: credentials inline in the URL are refused by the
    # serving worker with a condition and one Event, never echoing them.
    secret_url = _stream("cam-b")
    secret_url["spec"]["source"] = {"protocol": "rtsp", "url": "rtsp://admin:hunter2@127.0.0.1/x"}
    _apply(crd, ns, secret_url)
    body = crd.wait_for(lambda: phase("cam-b", "Invalid"), 60, 0.5, "cam-b marked Invalid")
    valid = {c["type"]: c for c in body["status"]["conditions"]}["Valid"]
    assert valid["status"] == "False" and "spec.source.url" in valid["message"]
    assert "hunter2" not in json.dumps(body["status"])
    time.sleep(2)  # later passes write nothing more
    again = _get(crd, ns, "camerastream", "cam-b")
    assert again["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    events = crd.kubectl_json("get", "events", "-n", ns)["items"]
    invalid = [e for e in events if e["involvedObject"]["name"] == "cam-b"]
    assert [e["reason"] for e in invalid] == ["InvalidSpec"]
    assert invalid[0]["source"]["component"] == "camstream-worker"
    assert all("hunter2" not in e.get("message", "") for e in events)


def test_worker_takes_an_srt_publisher_for_a_stream_it_owns(
    crd: Cluster, operator: str, tmp_path: Path
) -> None:
    """Cluster mode with --srt-port: Debian's ffmpeg pushes over SRT, encrypted; Live."""
    from tests.harness.srt import SrtCamera

    ns = operator
    srt_port = 8890
    _start_workers(crd, ns, 1, tmp_path, srt_port=srt_port)
    passphrase = "gate-srt-0123456789"
    _apply(crd, ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "gate-srt", "labels": {"camstream.io/usage": "camera-credentials"}},
                     "stringData": {"passphrase": passphrase}})  # fmt: skip
    gate = _srt_stream("gate", passphraseSecretRef={"name": "gate-srt"})
    _apply(crd, ns, gate)
    worker = f"{WORKERS}-0"

    def waiting() -> Any:
        doc = _ring(crd, ns)
        status = (_get(crd, ns, "stream", "gate") or {}).get("status") or {}
        # The worker has taken the stream (its status names it) and waits for the camera.
        return doc if doc and worker in doc.addresses and status.get("worker") == worker else None

    doc = crd.wait_for(waiting, 120, interval=0.5, what="gate taken by its worker")
    address = doc.addresses[worker]
    # A wrong passphrase is refused by the worker: the caller exits, nothing goes Live.
    wrong = SrtCamera(srt_port, host=address, stream_id=f"{ns}/gate", passphrase="wrong-0123456789")
    try:
        wrong.run_once(timeout=20)
    finally:
        wrong.cleanup()
    status = (_get(crd, ns, "stream", "gate") or {}).get("status") or {}
    assert status.get("phase") != "Live"
    camera = SrtCamera(srt_port, host=address, stream_id=f"{ns}/gate", passphrase=passphrase)
    with camera:

        def live() -> Any:
            status = (_get(crd, ns, "stream", "gate") or {}).get("status") or {}
            return status if status.get("phase") == "Live" else None

        status = crd.wait_for(live, 60, interval=0.5, what="gate Live over SRT")
        assert status["worker"] == worker
        playlist = tmp_path / worker / ns / "gate" / "index.m3u8"
        crd.wait_for(playlist.exists, 30, 0.5, "gate's playlist written")
    # The passphrase stays out of what any reader of the stream sees.
    events = crd.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert passphrase not in json.dumps(status) and passphrase not in events


def test_rtmp_push_to_a_worker_that_does_not_own_the_stream_reaches_the_owner(
    crd: Cluster, operator: str, tmp_path: Path
) -> None:
    """One ingest Service in front of every worker: the camera may land anywhere."""
    from tests.harness.cameras import RtmpPusher

    ns = operator
    _start_workers(crd, ns, 2, tmp_path)
    _apply(crd, ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "door-key", "labels": {"camstream.io/usage": "camera-credentials"}},  # opted in
                     "stringData": {"streamKey": "door-k3y"}})  # fmt: skip
    _apply(crd, ns, _stream("door", source={
        "protocol": "rtmp", "streamKeySecretRef": {"name": "door-key"}}))  # fmt: skip
    workers = {f"{WORKERS}-0", f"{WORKERS}-1"}

    def settled() -> Any:
        doc = _ring(crd, ns)
        return doc if set(doc.serving) == workers and doc.handoffs == () else None

    doc = crd.wait_for(settled, 150, interval=1.0, what="ring served by both workers")
    owner = doc.serving[ring.partition_of(f"{ns}/door", P)]
    stranger = (workers - {owner}).pop()
    url = f"rtmp://{doc.addresses[stranger]}:1935/{ns}/door/door-k3y"
    with RtmpPusher(url, clip=True, size="320x240", bitrate_kbps=300):

        def live_on_owner() -> Any:
            status = (_get(crd, ns, "stream", "door") or {}).get("status") or {}
            return status if status.get("phase") == "Live" else None

        status = crd.wait_for(live_on_owner, 60, interval=0.5, what="door Live")
        assert status["worker"] == owner
        playlist = tmp_path / owner / ns / "door" / "index.m3u8"
        crd.wait_for(playlist.exists, 30, 0.5, "door's playlist written by its owner")
        assert not (tmp_path / stranger / ns / "door").exists()
    # A wrong key is still refused when relayed: the owner checks it.
    wrong = RtmpPusher(url.replace("door-k3y", "guess"), clip=True, size="320x240")
    try:
        wrong.start()
        crd.wait_for(lambda: not wrong.running, 20, 0.5, "relayed wrong key dropped")
    except Exception as exc:  # refused before ffmpeg got going: also a refusal
        assert "exited" in str(exc)
    finally:
        wrong.cleanup()
