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

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "camstream"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# Served only where the Prometheus operator is installed.
NOT_SERVED_HERE = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
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


# -- a real install: the chart's RBAC is enough for what the operator does -------------

CAMSTREAM = Path(sys.executable).parent / "camstream"


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


CAMERA = """
apiVersion: camstream.io/v1alpha1
kind: CameraStream
metadata:
  name: lobby
  labels: {site: hq}
spec:
  source: {protocol: synthetic}
"""


def _diagnose(cluster: Cluster, namespace: str) -> str:
    """What the namespace looks like, for a failure message."""
    out = cluster.kubectl(
        "get", "all,events,leases,configmaps", "-n", namespace, "-o", "wide", check=False
    )
    return f"{out.stdout}\n{out.stderr}"


def test_helm_install_runs_the_operator_under_the_chart_rbac(
    control_plane: Cluster, namespace: str, tmp_path: Path
) -> None:
    """helm install for real; the node agent runs the pods as local processes.

    The images do not exist here, so `operator.command`/`worker.command` point
    at the installed `camstream` (the same command the images' ENTRYPOINT
    runs, tests/deploy/test_dockerfiles.py). The operator runs with the
    chart's ServiceAccount and Roles: it must take the leader Lease, create
    the ring ConfigMap and log no permission error.
    """
    release = "cams"
    # The test node keeps the not-ready taint (no node lifecycle controller
    # runs to lift it): tolerate it, as tests/cluster/test_operator.py does.
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
                    "podDisruptionBudget": {"enabled": False},
                },
                "rtmp": {"service": {"type": "ClusterIP"}},
            }
        )
    )
    install = helm_cli(
        control_plane,
        tmp_path,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values),
    )
    try:
        assert install.returncode == 0, install.stderr

        def leader() -> str:
            lease = control_plane.kubectl(
                "get",
                "lease",
                f"{release}-operator",
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.holderIdentity}",
                check=False,
            )
            return lease.stdout.strip() if lease.returncode == 0 else ""

        try:
            holder = control_plane.wait_for(leader, timeout=120, what="the operator's leader Lease")
        except TimeoutError as exc:
            raise AssertionError(_diagnose(control_plane, namespace)) from exc
        ring = control_plane.wait_for(
            lambda: (
                control_plane.kubectl(
                    "get", "configmap", f"{release}-ring", "-n", namespace, check=False
                ).returncode
                == 0
            ),
            timeout=60,
            what="the ring ConfigMap the operator creates",
        )
        assert ring
        pods = control_plane.kubectl_json(
            "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
        )["items"]
        names = sorted(p["metadata"]["name"] for p in pods)
        assert len(names) == 2
        assert holder in names, f"Lease held by {holder!r}, not an operator pod {names}"
        # A CameraStream in another namespace: the ClusterRole lets the leader
        # label it with its partition and write its status.
        streams_ns = f"{namespace}-cams"
        control_plane.kubectl("create", "namespace", streams_ns)
        try:
            control_plane.kubectl("apply", "-n", streams_ns, "-f", "-", input=CAMERA)

            def assigned() -> dict[str, Any] | None:
                body = control_plane.kubectl_json("get", "camerastream", "lobby", "-n", streams_ns)
                label = body["metadata"].get("labels", {}).get("camstream.io/partition")
                partition = (body.get("status") or {}).get("partition")
                return body if label is not None and partition is not None else None

            try:
                body = control_plane.wait_for(assigned, timeout=60, what="the stream's partition")
            except TimeoutError as exc:
                raise AssertionError(_diagnose(control_plane, namespace)) from exc
            assert body["metadata"]["labels"]["camstream.io/partition"] == str(
                body["status"]["partition"]
            )
            # docs/gitops.md: the partition label is the only metadata the
            # operator adds to what Git applied, and the spec is unchanged.
            assert body["metadata"]["labels"].keys() == {"site", "camstream.io/partition"}
            assert body["spec"]["source"]["protocol"] == "synthetic"
        finally:
            control_plane.kubectl("delete", "namespace", streams_ns, "--wait=false", check=False)
        time.sleep(2)  # a few more reconcile rounds (1 s interval) under the chart's RBAC
        for name in names:
            log = control_plane.agent.pod_log(name, namespace).read_text(errors="replace")
            for marker in ("Forbidden", "403", "forbidden"):
                assert marker not in log, f"{name} hit a permission error:\n{log[-3000:]}"
    finally:
        helm_cli(
            control_plane,
            tmp_path,
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "60s",
        )
