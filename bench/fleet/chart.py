"""The Helm chart, rendered by the real helm CLI, as the fleet bench uses it.

Who calls this: scenario.py, once per run. The bench installs what a real
release would give the operator and the workers, from the chart itself and
nothing hand-written: the ServiceAccounts, the Roles/ClusterRoles and their
bindings, the worker StatefulSet (its selector is what the operator reads)
and the operator's command-line arguments (the Deployment's container args),
so a change to the chart reaches the bench without editing it.

Not applied: the Deployments/StatefulSet pods (the bench runs the operator as
a local process and fakes the worker pods), Services, PodDisruptionBudgets
and monitoring objects.

helm is the binary scripts/install-helm.sh builds into the cache.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import NAMESPACE, RELEASE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "camstream"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def helm_binary() -> Path:
    cache = Path(os.environ.get("CAMSTREAM_CACHE", Path.home() / ".cache" / "camstream"))
    binary = cache / "bin" / "helm"
    if not binary.exists():
        subprocess.run(
            ["bash", str(REPO / "scripts" / "install-helm.sh")], check=True, timeout=1800
        )
    return binary


@dataclass(frozen=True)
class Release:
    """The rendered objects of one release, and the names the bench needs from them."""

    objects: tuple[dict[str, Any], ...]

    def find(self, kind: str, component: str) -> dict[str, Any]:
        for obj in self.objects:
            labels = obj["metadata"].get("labels") or {}
            if obj["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
                return obj
        raise LookupError(f"the chart renders no {kind} for {component}")

    def rbac(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in RBAC_KINDS]

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.find("StatefulSet", "worker")

    def _container(self, kind: str, component: str) -> dict[str, Any]:
        return dict(self.find(kind, component)["spec"]["template"]["spec"]["containers"][0])

    def operator_args(self) -> list[str]:
        """`camstream operator` arguments as the Deployment gives them, env expanded."""
        return _expand(self._container("Deployment", "operator").get("args") or [])

    def worker_args(self) -> list[str]:
        return _expand(self._container("StatefulSet", "worker").get("args") or [])

    def account(self, component: str) -> str:
        kind = "Deployment" if component == "operator" else "StatefulSet"
        return str(self.find(kind, component)["spec"]["template"]["spec"]["serviceAccountName"])

    def role(self, component: str) -> str:
        """The Role in the release namespace for `component` (leases, pods, ring)."""
        return str(self.find("Role", component)["metadata"]["name"])

    def operator_flag(self, flag: str) -> str:
        args = self.operator_args()
        return args[args.index(flag) + 1]


def _expand(args: list[str]) -> list[str]:
    # The only env the chart's args use; the bench sets the same value.
    return [str(a).replace("$(POD_NAMESPACE)", NAMESPACE) for a in args]


def render(*, partitions: int, workers: int) -> Release:
    """helm template of the chart for a release `cams` in `camstream`, watching all namespaces."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"camstream-fleet-helm-{os.getuid()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [
            str(helm_binary()), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--set", f"ring.partitions={partitions}", "--set", f"worker.replicas={workers}",
        ],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr[-2000:]}")
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return Release(objects=tuple(docs))
