"""Fixtures for tests/deploy: the real helm CLI and helpers to render the chart.

Who uses this: test_chart.py (lint, render, schema), test_dockerfiles.py (the
chart's container arguments against the CLI) and tests/cluster/test_chart_dryrun.py
(renders here, dry-runs on the real kube-apiserver).

helm is the binary scripts/install-helm.sh builds from its Go module into
${CAMSTREAM_CACHE:-~/.cache/camstream}/bin. If it is missing the fixture runs
the script (a few minutes, once); if that fails the tests fail: nothing here
is skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "camstream"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
INSTALL_HELM = REPO / "scripts" / "install-helm.sh"
RELEASE = "cams"
NAMESPACE = "camstream"

# helm warns on stderr for every symlink it follows (the chart's CRD is one).
_SYMLINK_NOTE = "found symbolic link in path"


def _helm_path() -> Path:
    cache = Path(os.environ.get("CAMSTREAM_CACHE", Path.home() / ".cache" / "camstream"))
    return cache / "bin" / "helm"


def clean_stderr(stderr: str) -> str:
    """helm's stderr without its symlink notices, for assertions and messages."""
    return "\n".join(line for line in stderr.splitlines() if _SYMLINK_NOTE not in line)


@dataclass(frozen=True)
class Helm:
    """The helm CLI, run with an isolated home so no user config leaks in."""

    binary: Path
    home: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n"
                f"{clean_stderr(result.stderr)}"
            )
        return result

    def template(
        self,
        values_files: Iterable[Path] = (),
        sets: Sequence[str] = (),
        *,
        chart: Path = CHART,
        include_crds: bool = False,
        namespace: str = NAMESPACE,
        release: str = RELEASE,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(chart), "--namespace", namespace]
        if include_crds:
            args.append("--include-crds")
        for path in values_files:
            args += ["--values", str(path)]
        for item in sets:
            args += ["--set", item]
        return self.run(*args, check=check)

    def render(
        self,
        values_files: Iterable[Path] = (),
        sets: Sequence[str] = (),
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Rendered objects, parsed; empty documents dropped."""
        out = self.template(values_files, sets, **kwargs).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = _helm_path()
    if not binary.exists():
        # First run on a fresh machine: build it (cached afterwards).
        subprocess.run(["bash", str(INSTALL_HELM)], check=True, timeout=1200)
    assert binary.exists(), f"helm not found at {binary}; run scripts/install-helm.sh"
    return Helm(binary=binary, home=tmp_path_factory.mktemp("helm-home"))


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(pod_owner: dict[str, Any], name: str) -> dict[str, Any]:
    containers = pod_owner["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if c["name"] == name]
    assert len(found) == 1, f"no container {name}"
    return found[0]
