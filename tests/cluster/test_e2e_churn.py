"""End-to-end churn: streams keep playing while workers come, go and crash.

Each scenario runs the operator and a worker StatefulSet as pods (real
apiserver, controllers, node agent, the chart's RBAC), applies synthetic
CameraStreams with kubectl, and watches every stream's playlist continuously
through a stand-in for the workers' Service (any worker answers and forwards
to the owner), recording per stream the longest gap without a new segment,
whether it was ever unreachable and whether its media sequence ever went
backwards. Figures are printed (run with -s) and checked against the targets:
no stream lost, no gap longer than two segment durations plus the watcher's
own resolution, failover within 10 s.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from camstream import ring
from tests.harness.hlscheck import PlaylistWatcher, WatchResult

from .conftest import Cluster
from .test_operator import (
    RING,
    WORKERS,
    P,
    _apply,
    _ring,
    _start_workers,
    _stream,
    crd,
    operator,
)

_FIXTURES = (crd, operator)  # imported for pytest; named here so linters keep them

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

SEGMENT = 1.0  # seconds, as _stream sets it
# Two segment durations, plus the watcher's poll resolution and a margin for
# two shared cores running the control plane, five workers and the cameras.
MAX_GAP = 2 * SEGMENT + 2.0


class ServiceProxy:
    """A loopback stand-in for the workers' Service: each GET goes to a worker pod
    (Ready ones first), as kube-proxy would send it; the worker forwards it to
    the stream's owner itself."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._ips: list[str] = []
        self._stop = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                for ip in list(proxy._ips):
                    try:
                        with urllib.request.urlopen(
                            f"http://{ip}:8080{self.path}", timeout=3.0
                        ) as r:
                            body = r.read()
                            self.send_response(r.status)
                            self.send_header("Content-Type", r.headers.get("Content-Type", ""))
                            self.send_header("Content-Length", str(len(body)))
                            self.end_headers()
                            self.wfile.write(body)
                            return
                    except (urllib.error.URLError, OSError, TimeoutError):
                        continue
                with contextlib.suppress(OSError):  # the watcher may have given up
                    self.send_error(503)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ServiceProxy:
        self._refresh()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._refresh_loop, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._refresh()
            except Exception:
                continue

    def _refresh(self) -> None:
        pods = self._cluster.kubectl_json(
            "get", "pods", "-n", self._namespace, "-l", f"app={WORKERS}"
        )
        ready, other = [], []
        for pod in pods["items"]:
            ip = pod.get("status", {}).get("podIP")
            if not ip or pod["metadata"].get("deletionTimestamp"):
                continue
            conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            (ready if conds.get("Ready") == "True" else other).append(ip)
        self._ips = ready + other


def _streams(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return cluster.kubectl_json("get", "streams", "-n", ns)["items"]


def _all_live(cluster: Cluster, ns: str, count: int) -> list[dict[str, Any]] | None:
    items = _streams(cluster, ns)
    live = [i for i in items if (i.get("status") or {}).get("phase") == "Live"]
    return items if len(live) == count else None


def _settled(cluster: Cluster, ns: str, members: set[str]) -> Any:
    """The ring once it serves exactly `members`, balanced, with no handoff in flight."""
    doc = _ring(cluster, ns)
    if doc is None or doc.handoffs or set(doc.serving) != members:
        return None
    counts = [list(doc.serving).count(m) for m in members]
    return doc if max(counts) - min(counts) <= 1 else None


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Cluster, str, list[str]]]:
    """Operator + 3 workers + 6 Live synthetic streams."""
    cluster: Cluster = request.getfixturevalue("crd")
    ns: str = request.getfixturevalue("operator")
    _start_workers(cluster, ns, 3, tmp_path)
    names = [f"cam-{i}" for i in range(6)]
    for name in names:
        _apply(cluster, ns, _stream(name))
    cluster.wait_for(lambda: _all_live(cluster, ns, len(names)), 180, 1.0, "6 streams Live")
    cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 60, 1.0, "ring on 3 workers")
    yield cluster, ns, names
    cluster.kubectl("delete", "statefulset", WORKERS, "-n", ns, "--wait=false", check=False)


def _workers(n: int) -> set[str]:
    return {f"{WORKERS}-{i}" for i in range(n)}


def _watch(proxy: ServiceProxy, ns: str, names: list[str]) -> PlaylistWatcher:
    targets = {n: f"{proxy.url}/streams/{ns}/{n}/index.m3u8" for n in names}
    return PlaylistWatcher(targets, interval=0.25, request_timeout=6.0)


def _report(title: str, results: dict[str, WatchResult], **figures: Any) -> None:
    worst = max(results.values(), key=lambda r: r.longest_gap)
    summary = {
        "scenario": title,
        "worst_gap_s": round(worst.longest_gap, 2),
        "worst_stream": worst.name,
        "gaps_s": {n: round(r.longest_gap, 2) for n, r in sorted(results.items())},
        "ever_unreachable": sorted(n for n, r in results.items() if r.ever_unreachable),
        "sequence_regressions": sum(r.sequence_regressions for r in results.values()),
        **figures,
    }
    print("\n" + json.dumps(summary, indent=1))


def _check(results: dict[str, WatchResult]) -> None:
    for name, r in results.items():
        assert r.new_segments > 0, f"{name} never produced a segment: {r}"
        assert r.sequence_regressions == 0, f"{name} media sequence went backwards: {r}"
        assert not r.ever_unreachable, f"{name} was unreachable: {r}"
        assert r.longest_gap <= MAX_GAP, f"{name} gap {r.longest_gap:.1f} s: {r}"


def _moved(before: Any, after: Any) -> int:
    return sum(1 for a, b in zip(before.serving, after.serving, strict=True) if a != b)


def test_scale_3_to_5_to_2_loses_no_stream(fleet: tuple[Cluster, str, list[str]]) -> None:
    cluster, ns, names = fleet
    with ServiceProxy(cluster, ns) as proxy, _watch(proxy, ns, names) as watcher:
        time.sleep(3)
        before = _ring(cluster, ns)
        cluster.kubectl("scale", "statefulset", WORKERS, "-n", ns, "--replicas=5")
        up = cluster.wait_for(lambda: _settled(cluster, ns, _workers(5)), 120, 1.0, "5 workers")
        time.sleep(3)
        cluster.kubectl("scale", "statefulset", WORKERS, "-n", ns, "--replicas=2")
        down = cluster.wait_for(lambda: _settled(cluster, ns, _workers(2)), 120, 1.0, "2 workers")
        time.sleep(3)
        results = watcher.stop()
    moved_up, moved_down = _moved(before, up), _moved(up, down)
    ideal_up = P * 2 / 5  # 3 → 5: the newcomers' fair share
    ideal_down = P * 3 / 5  # 5 → 2: everything the three leavers held
    _report(
        "scale 3→5→2",
        results,
        partitions=P,
        moved_on_join=moved_up,
        ideal_on_join=ideal_up,
        moved_on_leave=moved_down,
        ideal_on_leave=ideal_down,
    )
    _check(results)
    assert moved_up <= math.ceil(ideal_up) + 1
    assert moved_down <= math.ceil(ideal_down) + 1
    assert _all_live(cluster, ns, len(names))


def test_rolling_restart_loses_no_stream(fleet: tuple[Cluster, str, list[str]]) -> None:
    cluster, ns, names = fleet
    with ServiceProxy(cluster, ns) as proxy, _watch(proxy, ns, names) as watcher:
        time.sleep(3)
        cluster.kubectl("rollout", "restart", "statefulset", WORKERS, "-n", ns)
        cluster.kubectl(
            "rollout", "status", "statefulset", WORKERS, "-n", ns, "--timeout=300s", timeout=320
        )
        cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
        time.sleep(3)
        results = watcher.stop()
    _report("rolling restart", results)
    _check(results)
    assert _all_live(cluster, ns, len(names))


def test_crash_fails_over_fast_and_hands_back(fleet: tuple[Cluster, str, list[str]]) -> None:
    cluster, ns, names = fleet
    victim = f"{WORKERS}-1"
    before = _ring(cluster, ns)
    home = {p for p, owner in enumerate(before.serving) if owner == victim}
    on_victim = [n for n in names if ring.partition_of(f"{ns}/{n}", P) in home]
    with ServiceProxy(cluster, ns) as proxy, _watch(proxy, ns, names) as watcher:
        time.sleep(3)
        killed_at = time.monotonic()
        cluster.agent.kill(victim, ns)

        def moved_and_live() -> bool:
            items = {i["metadata"]["name"]: i.get("status") or {} for i in _streams(cluster, ns)}
            return all(
                items[n].get("worker") not in (None, victim) and items[n].get("phase") == "Live"
                for n in on_victim
            )

        cluster.wait_for(moved_and_live, 30, 0.2, "the victim's streams live elsewhere")
        failover = time.monotonic() - killed_at
        # The pod restarts in place; its partitions come back make-before-break.
        back = cluster.wait_for(
            lambda: (d := _settled(cluster, ns, _workers(3))) and d.serving == before.serving and d,
            120,
            1.0,
            "partitions handed back",
        )
        time.sleep(3)
        results = watcher.stop()
    _report(
        "SIGKILL one worker",
        results,
        failover_s=round(failover, 2),
        victim_streams=on_victim,
        handed_back=len(home),
    )
    assert failover <= 10.0
    assert back.serving == before.serving
    # A crash cuts the victim's streams for the failover time; the others must not notice.
    survivors = {n: r for n, r in results.items() if n not in on_victim}
    _check(survivors)
    for name in on_victim:
        r = results[name]
        assert r.sequence_regressions == 0 and r.longest_gap <= failover + MAX_GAP + 2


def test_killing_the_active_operator_replica_changes_nothing(
    fleet: tuple[Cluster, str, list[str]],
) -> None:
    cluster, ns, names = fleet
    cluster.kubectl("scale", "deployment", "camstream-operator", "-n", ns, "--replicas=2")

    def two_running() -> list[str] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=camstream-operator")
        running = [
            p["metadata"]["name"]
            for p in pods["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return running if len(running) == 2 else None

    replicas = cluster.wait_for(two_running, 90, 1.0, "two operator replicas")

    def holder() -> str | None:
        lease = cluster.kubectl_json("get", "lease", "camstream-operator", "-n", ns)
        return (lease.get("spec") or {}).get("holderIdentity")

    leader = holder()
    assert leader in replicas
    ring_version = cluster.kubectl_json("get", "configmap", RING, "-n", ns)["metadata"][
        "resourceVersion"
    ]
    versions = {
        i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in _streams(cluster, ns)
    }
    with ServiceProxy(cluster, ns) as proxy, _watch(proxy, ns, names) as watcher:
        time.sleep(2)
        killed_at = time.monotonic()
        # Forced deletion: the process dies at once (SIGKILL, no Lease release) and
        # the pod is gone, so only the stand-by can take over, once the Lease expires.
        cluster.kubectl(
            "delete", "pod", leader, "-n", ns, "--grace-period=0", "--force", "--wait=false"
        )
        # The stand-by, or the replica the Deployment starts instead, whichever
        # reads the expired Lease first.
        cluster.wait_for(lambda: holder() not in (None, leader), 90, 0.5, "another replica leading")
        takeover = time.monotonic() - killed_at
        time.sleep(5)
        results = watcher.stop()
    _report("SIGKILL the active operator", results, takeover_s=round(takeover, 2))
    _check(results)
    assert _ring_version(cluster, ns) == ring_version  # same ring re-derived: no write
    assert _versions(cluster, ns) == versions  # no stream was touched, none restarted


def _ring_version(cluster: Cluster, ns: str) -> str:
    return str(
        cluster.kubectl_json("get", "configmap", RING, "-n", ns)["metadata"]["resourceVersion"]
    )


def _versions(cluster: Cluster, ns: str) -> dict[str, str]:
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in _streams(cluster, ns)}
