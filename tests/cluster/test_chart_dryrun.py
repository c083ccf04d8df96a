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
