"""Fixtures for tests that need a real Kubernetes cluster (tests/cluster).

pytest loads this for everything under tests/cluster. The session fixture
`control_plane` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the node agent once per test run, on loopback, and tears
them down at the end. The binaries are built (or found in the cache) by
scripts/build-controlplane.sh during collection, outside any test's timeout.
Component and pod logs are kept; when a test failed (or with
CAMSTREAM_KEEP_CLUSTER_LOGS=1, to read a passing run's handoffs) they are
copied to artifacts/cluster-logs/<time>/ in the repository.

Every test collected under tests/cluster gets the `cluster` marker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .controlplane import REPO, ControlPlane, build_binaries
from .nodeagent import NodeAgent

HERE = Path(__file__).resolve().parent
_bin_dir: Path | None = None
_build_error: Exception | None = None


def _in_this_suite(item: pytest.Item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _in_this_suite(item):
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Build here, not in the fixture: a cold build takes tens of minutes and
    # must not count against the first test's timeout.
    global _bin_dir, _build_error
    wanted = {"control_plane", "control_plane_bin_dir"}
    if any(wanted & set(getattr(item, "fixturenames", ())) for item in session.items):
        try:
            _bin_dir = build_binaries()
        except Exception as exc:  # reported by the fixture: each cluster test errors
            _build_error = exc


@dataclass
class Cluster:
    """What cluster tests get: the control plane, the node agent and helpers."""

    plane: ControlPlane
    agent: NodeAgent
    log_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kubectl(self, *args: str, **kwargs: Any) -> Any:
        """Run kubectl as the cluster admin (see ControlPlane.kubectl)."""
        return self.plane.kubectl(*args, **kwargs)

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return self.plane.kubectl_json(*args)

    def wait_for(
        self, condition: Any, timeout: float = 60.0, interval: float = 0.3, what: str = ""
    ) -> Any:
        """Poll `condition()` until truthy; TimeoutError naming `what` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)


@pytest.fixture(scope="session")
def control_plane_bin_dir() -> Path:
    """The control plane's binaries, for tests that start a plane of their own
    (test_fleet.py: an audit log, no controllers); built during collection."""
    if _build_error is not None:
        raise _build_error
    return _bin_dir or build_binaries()


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A running cluster for the whole session (real apiserver, controllers, node agent)."""
    if _build_error is not None:
        raise _build_error
    bin_dir = _bin_dir or build_binaries()
    work = tmp_path_factory.mktemp("cluster")
    log_dir = work / "logs"
    plane = ControlPlane(bin_dir=bin_dir, work_dir=work, log_dir=log_dir)
    agent: NodeAgent | None = None
    started = time.monotonic()
    try:
        plane.start()
        agent = NodeAgent.on(plane, work / "pods")
        agent.start()
        (log_dir / "startup.txt").write_text(
            f"control plane + node agent started in {time.monotonic() - started:.1f} s\n"
        )
        yield Cluster(plane=plane, agent=agent, log_dir=log_dir)
    finally:
        if agent is not None:
            agent.stop()
        plane.stop()
        if request.session.testsfailed or os.environ.get("CAMSTREAM_KEEP_CLUSTER_LOGS") == "1":
            target = REPO / "artifacts" / "cluster-logs" / time.strftime("%Y%m%d-%H%M%S")
            shutil.copytree(log_dir, target, dirs_exist_ok=True)


@pytest.fixture
def namespace(control_plane: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    with fresh_namespace(control_plane) as name:
        yield name


@contextlib.contextmanager
def fresh_namespace(cluster: Cluster) -> Iterator[str]:
    """A new namespace with its `default` ServiceAccount; deleted (without waiting) on exit."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # The serviceaccount controller creates `default`; pods need it to be admitted.
    cluster.wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=30,
        what=f"ServiceAccount default in {name}",
    )
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
