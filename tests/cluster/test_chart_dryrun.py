"""Every manifest the Helm chart renders is accepted by a real kube-apiserver.

For the default values and each documented example, the chart is rendered by
the real helm CLI (with its CRD) and sent to the control plane with
`kubectl apply --dry-run=server`: the API server runs defaulting, schema and
admission validation on every object without storing it. Kinds the test
cluster does not serve (the Prometheus operator's ServiceMonitor and
PrometheusRule) are the only ones set aside, and the test names them.

helm comes from scripts/install-helm.sh, like tests/deploy (whose helpers
are not importable from this package, hence the few lines below).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from camstream import partition_labels

from .conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "camstream"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# Served only where the Prometheus operator is installed.
NOT_SERVED_HERE = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def _helm() -> Path:
    cache = Path(os.environ.get("CAMSTREAM_CACHE", Path.home() / ".cache" / "camstream"))
    binary = cache / "bin" / "helm"
    if not binary.exists():
        subprocess.run(
            ["bash", str(REPO / "scripts" / "install-helm.sh")], check=True, timeout=1200
        )
    return binary


def render(values: Path | None, namespace: str, tmp_path: Path) -> list[dict[str, Any]]:
    args = [
        str(_helm()),
        "template",
        "cams",
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
    ]
    if values is not None:
        args += ["--values", str(values)]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def watched_namespaces(control_plane: Cluster) -> Iterator[list[str]]:
    """Create the namespaces the examples list in watchNamespaces (Roles go there).

    Module-scoped: a namespace deleted after one test stays Terminating for a
    while, and the next test could not create objects in it.
    """
    wanted = sorted(
        {
            ns
            for example in EXAMPLES
            for ns in (yaml.safe_load(example.read_text()) or {}).get("watchNamespaces", [])
        }
    )
    created = []
    try:
        for ns in wanted:
            exists = control_plane.kubectl("get", "namespace", ns, check=False).returncode == 0
            if not exists:
                control_plane.kubectl("create", "namespace", ns)
                created.append(ns)
        yield wanted
    finally:
        for ns in created:
            control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.stem if p else "defaults")
def test_rendered_chart_passes_server_side_dry_run(
    control_plane: Cluster,
    namespace: str,
    watched_namespaces: list[str],
    values: Path | None,
    tmp_path: Path,
) -> None:
    objects = render(values, namespace, tmp_path)
    served = [o for o in objects if (o["apiVersion"], o["kind"]) not in NOT_SERVED_HERE]
    set_aside = {(o["apiVersion"], o["kind"]) for o in objects} - {
        (o["apiVersion"], o["kind"]) for o in served
    }
    assert set_aside <= NOT_SERVED_HERE
    # The cluster really does not serve them (else they must be validated too).
    group = control_plane.kubectl(
        "api-resources", "--api-group=monitoring.coreos.com", "-o", "name", check=False
    )
    assert group.stdout.strip() == "", "monitoring.coreos.com is served: validate it as well"

    assert any(o["kind"] == "CustomResourceDefinition" for o in served)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(served, sort_keys=False))
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", str(manifest), check=False, timeout=120
    )
    assert result.returncode == 0, f"rejected by kube-apiserver:\n{result.stderr}"
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(served), result.stdout

    # Dry-run stores nothing: the release's objects are not there.
    left = control_plane.kubectl(
        "get", "statefulsets,deployments", "-n", namespace, "-o", "name", check=False
    )
    assert left.stdout.strip() == ""


# -- a real install: the chart's pods run under the chart's RBAC ----------------------

CAMSTREAM = Path(sys.executable).parent / "camstream"
RELEASE = "cams"
CAMERA = """
apiVersion: camstream.io/v1alpha1
kind: CameraStream
metadata:
  name: lobby
  labels: {site: hq}
spec:
  source: {protocol: synthetic, synthetic: {width: 320, height: 180, fps: 10, audio: false}}
"""
PERMISSION_ERRORS = ("Forbidden", "forbidden")


def helm_cli(cluster: Cluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    return subprocess.run(
        [str(_helm()), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def _diagnose(cluster: Cluster, *namespaces: str) -> str:
    """What the namespaces look like, for a failure message."""
    out = []
    for ns in namespaces:
        got = cluster.kubectl(
            "get",
            "all,events,leases,configmaps,camerastreams",
            "-n",
            ns,
            "-o",
            "wide",
            check=False,
        )
        out.append(f"--- {ns}\n{got.stdout}\n{got.stderr}")
    return "\n".join(out)


def _wait(cluster: Cluster, condition: Any, what: str, timeout: float, *namespaces: str) -> Any:
    try:
        return cluster.wait_for(condition, timeout=timeout, what=what)
    except TimeoutError as exc:
        raise AssertionError(
            f"timed out waiting for {what}\n{_diagnose(cluster, *namespaces)}"
        ) from exc


def _install_values(tmp_path: Path) -> Path:
    # The images do not exist here: `command` runs the installed `camstream`,
    # the same program the images' ENTRYPOINT runs (tests/deploy). The test
    # node keeps the not-ready taint (no node lifecycle controller lifts it).
    tolerations = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "operator": {"command": [str(CAMSTREAM), "operator"], "tolerations": tolerations},
                "worker": {
                    "command": [str(CAMSTREAM), "worker"],
                    "tolerations": tolerations,
                    "replicas": 1,
                    "terminationGracePeriodSeconds": 20,
                    "podDisruptionBudget": {"enabled": False},
                },
                "rtmp": {"service": {"type": "ClusterIP"}},
                "edge": {
                    "command": [str(CAMSTREAM), "edge"],
                    "tolerations": tolerations,
                    "replicas": 1,
                    "drainSeconds": 2,
                    "terminationGracePeriodSeconds": 5,
                    "podDisruptionBudget": {"enabled": False},
                },
            }
        )
    )
    return values


@dataclass(frozen=True)
class Installed:
    """A release of the chart running on the test cluster, with one Live stream."""

    cluster: Cluster
    namespace: str
    streams_namespace: str
    operators: list[str]
    leader: str
    worker_ip: str
    stream: dict[str, Any]
    notes: str

    def get(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())


@pytest.fixture(scope="module")
def installed(
    control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """helm install for real; the node agent runs the pods as local processes.

    With the chart's ServiceAccounts and Roles only, the operator must take
    the leader Lease and create the ring, the worker must become Ready, and a
    CameraStream in another namespace must go Live on it.
    """
    cluster = control_plane
    tmp_path = tmp_path_factory.mktemp("install")
    namespace = f"t-chart-{uuid.uuid4().hex[:6]}"
    streams_ns = f"{namespace}-cams"
    cluster.kubectl("create", "namespace", namespace)
    try:
        install = helm_cli(
            cluster,
            tmp_path,
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--values",
            str(_install_values(tmp_path)),
        )
        assert install.returncode == 0, install.stderr

        def leader() -> str:
            got = cluster.kubectl(
                "get",
                "lease",
                f"{RELEASE}-operator",
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.holderIdentity}",
                check=False,
            )
            return got.stdout.strip() if got.returncode == 0 else ""

        holder = _wait(cluster, leader, "the operator's leader Lease", 120, namespace)
        operators = sorted(
            p["metadata"]["name"]
            for p in cluster.kubectl_json(
                "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
            )["items"]
        )

        def worker_ready() -> bool:
            pod = cluster.kubectl_json("get", "pod", f"{RELEASE}-worker-0", "-n", namespace)
            conditions = (pod.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        _wait(cluster, worker_ready, "worker 0 Ready (/readyz)", 120, namespace)

        def edge_ready() -> bool:
            # Ready only once it reads the ring, under the chart's Role (by name).
            pods = cluster.kubectl_json(
                "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=edge"
            )["items"]
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for p in pods
                for c in (p.get("status") or {}).get("conditions") or []
            )

        _wait(cluster, edge_ready, "the ingest edge Ready (/readyz)", 120, namespace)
        worker = cluster.kubectl_json("get", "pod", f"{RELEASE}-worker-0", "-n", namespace)

        cluster.kubectl("create", "namespace", streams_ns)
        cluster.kubectl("apply", "-n", streams_ns, "-f", "-", input=CAMERA)

        def live() -> dict[str, Any] | None:
            body = cluster.kubectl_json("get", "camerastream", "lobby", "-n", streams_ns)
            status = body.get("status") or {}
            return body if status.get("phase") == "Live" else None

        stream = _wait(cluster, live, "the CameraStream Live", 120, namespace, streams_ns)
        yield Installed(
            cluster=cluster,
            namespace=namespace,
            streams_namespace=streams_ns,
            operators=operators,
            leader=holder,
            worker_ip=worker["status"]["podIP"],
            stream=stream,
            notes=install.stdout.split("NOTES:", 1)[-1],
        )
    finally:
        cluster.kubectl("delete", "namespace", streams_ns, "--wait=false", check=False)
        helm_cli(
            cluster,
            tmp_path,
            "uninstall",
            RELEASE,
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "60s",
        )
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_installed_operator_leads_and_keeps_the_ring(installed: Installed) -> None:
    assert len(installed.operators) == 2
    assert installed.leader in installed.operators
    ring = installed.cluster.kubectl_json(
        "get", "configmap", f"{RELEASE}-ring", "-n", installed.namespace
    )
    assert ring["data"], "the operator wrote the ring"


def test_install_notes_tell_how_to_play(installed: Installed) -> None:
    notes = installed.notes
    assert f"release {RELEASE} in namespace {installed.namespace}" in notes
    assert f"port-forward svc/{RELEASE}-playback 8080:80" in notes
    assert f"kubectl -n {installed.namespace} get svc {RELEASE}-rtmp" in notes
    assert "all namespaces" in notes
    # With no namespace given for Secrets, the notes say how one opts in.
    assert "Secrets workers may read: none yet" in notes
    assert _opt_in_command(installed, "<namespace>") in notes


def test_installed_stream_is_live_labelled_and_plays(installed: Installed) -> None:
    body = installed.stream
    assert body["status"]["worker"] == f"{RELEASE}-worker-0"
    labels = body["metadata"]["labels"]
    # docs/gitops.md: the partition labels are the only metadata camstream adds.
    partitions = 256  # the chart's default ring
    assert labels[partition_labels.label_key(partitions)] == str(body["status"]["partition"])
    assert labels.keys() == {"site"} | {
        partition_labels.label_key(size) for size in partition_labels.sizes_from(partitions)
    }
    url = (
        f"http://{installed.worker_ip}:8080/streams/{installed.streams_namespace}/lobby/index.m3u8"
    )

    def playlist() -> str | None:
        try:
            text = installed.get(url)
        except OSError:
            return None
        return text if "#EXTINF" in text else None

    assert _wait(installed.cluster, playlist, f"a playlist at {url}", 60, installed.namespace)


def _exported(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (camstream_[a-z0-9_]+) ", text, flags=re.MULTILINE))


def _documented(section: str) -> set[str]:
    """Metric names of one table (## Workers / ## Operator) of docs/metrics.md."""
    doc = (REPO / "docs" / "metrics.md").read_text()
    part = doc.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(camstream_[a-z0-9_]+)`", part, flags=re.MULTILINE))


def test_installed_worker_exports_the_documented_metrics(installed: Installed) -> None:
    text = installed.get(f"http://{installed.worker_ip}:8080/metrics")
    missing = {m for m in _documented("Workers") if m not in _exported(text)}
    assert not missing, (
        f"docs/metrics.md lists worker metrics the worker does not export: {missing}"
    )
    assert (
        f'camstream_stream_up{{name="lobby",namespace="{installed.streams_namespace}"}} 1.0' in text
    )


def test_installed_operator_exports_the_documented_metrics(installed: Installed) -> None:
    # The chart's ServiceMonitor scrapes the operator's port (operator.port) at /metrics.
    pod = installed.cluster.kubectl_json("get", "pod", installed.leader, "-n", installed.namespace)
    try:
        text = installed.get(f"http://{pod['status']['podIP']}:8081/metrics")
    except OSError as exc:
        raise AssertionError(f"the operator serves no /metrics on :8081 ({exc})") from exc
    missing = {m for m in _documented("Operator") if m not in _exported(text)}
    assert not missing, f"docs/metrics.md lists operator metrics it does not export: {missing}"


def test_installed_components_hit_no_permission_error(installed: Installed) -> None:
    time.sleep(2)  # a few more reconcile rounds and heartbeats under the chart's RBAC
    edges = installed.cluster.kubectl_json(
        "get", "pods", "-n", installed.namespace, "-l", "app.kubernetes.io/component=edge"
    )["items"]
    for name in [
        *installed.operators,
        f"{RELEASE}-worker-0",
        *(p["metadata"]["name"] for p in edges),
    ]:
        log = installed.cluster.agent.pod_log(name, installed.namespace).read_text(errors="replace")
        for marker in PERMISSION_ERRORS:
            assert marker not in log, f"{name} hit a permission error:\n{log[-3000:]}"


# -- Secrets and sources under the chart's RBAC (issue 8, attacks 1 and 2) ------------


def _opt_in_command(installed: Installed, namespace: str) -> str:
    """What a namespace's admin runs to let the workers read its Secrets (the README's)."""
    return (
        f"kubectl -n {namespace} create rolebinding camstream-worker-secrets "
        f"--clusterrole={installed.namespace}-{RELEASE}-worker-secrets "
        f"--serviceaccount={installed.namespace}:{RELEASE}-worker"
    )


def test_installed_worker_uses_a_secret_only_where_allowed_and_opted_in(
    installed: Installed,
) -> None:
    """RBAC first (the namespace must bind the chart's ClusterRole), then the
    Secret's own opt-in label; each refusal names what is missing, never a value."""
    cluster, ns = installed.cluster, installed.streams_namespace
    key = "gate-k3y-never-shown"
    cluster.kubectl(
        "create", "secret", "generic", "gate-key", "-n", ns, f"--from-literal=streamKey={key}"
    )
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=GATE)

    def status(want_message: str) -> Any:
        body = cluster.kubectl_json("get", "camerastream", "gate", "-n", ns)
        got = body.get("status") or {}
        return got if want_message in got.get("message", "") else None

    refused = _wait(cluster, lambda: status("may not read Secrets"), "no RBAC", 60, ns)
    assert (refused["phase"], refused["reason"]) == ("Failed", "SecretNotAllowed")
    assert f"Secret {ns}/gate-key" in refused["message"]

    cluster.kubectl(*_opt_in_command(installed, ns).split()[1:])
    not_opted = _wait(cluster, lambda: status("has not opted in"), "no label", 60, ns)
    assert (not_opted["phase"], not_opted["reason"]) == ("Failed", "SecretNotAllowed")
    assert "camstream.io/usage=camera-credentials" in not_opted["message"]

    cluster.kubectl(
        "label", "secret", "gate-key", "-n", ns, "camstream.io/usage=camera-credentials"
    )

    def waiting_for_camera() -> Any:
        body = cluster.kubectl_json("get", "camerastream", "gate", "-n", ns)
        return body if (body.get("status") or {}).get("phase") == "Connecting" else None

    _wait(cluster, waiting_for_camera, "gate waiting for its camera", 60, ns)
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    body = cluster.kubectl("get", "camerastream", "gate", "-n", ns, "-o", "json").stdout
    log = cluster.agent.pod_log(f"{RELEASE}-worker-0", installed.namespace).read_text()
    for text in (events, body, log):
        assert key not in text


GATE = """
apiVersion: camstream.io/v1alpha1
kind: CameraStream
metadata:
  name: gate
spec:
  source: {protocol: rtmp, streamKeySecretRef: {name: gate-key}}
"""


async def test_a_secret_name_cannot_lead_the_worker_out_of_its_namespace(
    installed: Installed,
) -> None:
    """The reported read of kube-system's Secret, against the real API server:
    the worker's client keeps the name in one path segment."""
    from camstream import kubeapi, wire
    from camstream.spec import SecretRef
    from camstream_worker.cluster.secrets import KubeSecrets
    from camstream_worker.errors import SecretError

    cluster, ns = installed.cluster, installed.streams_namespace
    value = "kube-system-s3cret"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "x", "namespace": "kube-system",
                     "labels": {wire.SECRET_USAGE_LABEL: wire.SECRET_USAGE_VALUE}},
        "stringData": {"k": value},
    }))  # fmt: skip
    try:
        async with kubeapi.KubeApi(kubeapi.load_credentials(str(cluster.kubeconfig))) as api:
            secrets = KubeSecrets(api)  # as the cluster admin: RBAC would not stop it
            assert await secrets.get("kube-system", SecretRef("x", "k")) == value  # it is there
            for name in (
                "../../kube-system/secrets/x",
                "..%2F..%2Fkube-system%2Fsecrets%2Fx",
                "..",
            ):
                with pytest.raises(SecretError) as caught:
                    await secrets.get(ns, SecretRef(name, "k"))
                assert value not in str(caught.value)
    finally:
        cluster.kubectl("delete", "secret", "x", "-n", "kube-system", check=False)


def _admission_cases() -> list[tuple[str, dict[str, Any]]]:
    """Sources whose Secret references (and protocols) the CRD and spec.py must judge alike."""
    rng = random.Random(8)
    alphabet = "abz09-._/%A:? \u00e9"
    values = [
        "../../kube-system/secrets/x", "..", ".", "", "kube-system/x", "x%2F..", "Door-Key",
        "door-key", "door.key", "-door", "door-", "a" * 253, "a" * 254, ".hidden", "..x", "x..",
        "user_name", "pass word", "k\u00e9y",
    ]  # fmt: skip
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(40)]
    cases: list[tuple[str, dict[str, Any]]] = []
    for value in values:
        cases.append(("name", {"protocol": "rtmp", "streamKeySecretRef": {"name": value}}))
        cases.append(
            ("key", {"protocol": "rtmp", "streamKeySecretRef": {"name": "k", "key": value}})
        )
    creds = {"credentialsSecretRef": {"name": "cam"}}
    cases += [
        ("file", {"protocol": "file", "url": "/etc/passwd"}),
        ("tls", {"protocol": "rtsp", "url": "rtsp://10.0.0.5/x", **creds}),
        ("tls", {"protocol": "http", "url": "HTTP://10.0.0.5/x", **creds}),
        ("tls", {"protocol": "rtsp", "url": "RTSPS://10.0.0.5/x", **creds}),
        ("tls", {"protocol": "rtsp", "url": "rtsp://10.0.0.5/x", **creds,
                 "allowInsecureCredentials": True}),
    ]  # fmt: skip
    return cases


def test_admission_and_spec_py_refuse_the_same_references_with_the_same_message(
    installed: Installed, tmp_path: Path
) -> None:
    """The CRD's CEL rules, run by the real API server (dry run), against spec.py."""
    from camstream.spec import SpecError, parse_stream

    cases = _admission_cases()
    docs = [
        {
            "apiVersion": "camstream.io/v1alpha1",
            "kind": "CameraStream",
            "metadata": {"name": f"case-{i}", "namespace": installed.streams_namespace},
            "spec": {"source": source},
        }
        for i, (_, source) in enumerate(cases)
    ]
    manifest = tmp_path / "cases.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, allow_unicode=True))
    result = installed.cluster.kubectl(
        "apply", "--dry-run=server", "-f", str(manifest), check=False, timeout=120
    )
    refused: dict[str, str] = {}
    for line in result.stderr.splitlines():
        found = re.search(r'"(case-\d+)" is invalid: (.*)$', line)
        if found:
            refused[found.group(1)] = found.group(2)
    for i, (what, _) in enumerate(cases):
        name = f"case-{i}"
        try:
            parse_stream(docs[i])
            python = None
        except SpecError as err:
            python = err
        if python is None:
            assert name not in refused, (what, cases[i][1], refused.get(name))
            assert f"camerastream.camstream.io/{name} created (server dry run)" in result.stdout
            continue
        assert name in refused, (what, cases[i][1], python)
        if "Too long" in refused[name]:
            continue  # over the schema's maxLength: the API server words it
        assert python.message in refused[name], (cases[i][1], refused[name], python.message)
        assert python.field in refused[name]
