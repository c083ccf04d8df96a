"""End-to-end churn without the control plane (#14): the data path never waits on it.

One fleet for the module — the churn suite's operator, 3 workers and 22
streams from real cameras — on a control plane of its own (started for this
module and thrown away after it, so the outages below cannot leave the
session's control plane short of anything later tests need), with a node
agent that gives each pod its own path to the API server (apilink.py).

- One worker cut off from the API server for 30 s while it still reaches its
  cameras, its peers and its viewers. It keeps serving what it has (it cannot
  tell a cut link from an outage); the operator fails its partitions over
  once its Lease has not been seen to change for the Lease's duration; when
  the link returns the worker reads the ring within seconds, stops its copies
  and takes its partitions back make-before-break. Measured: how long a pulled
  camera had two readers (RTSP sessions counted at the camera), how long
  viewers saw a gap, through the Service and stuck on the cut-off worker,
  that no viewer saw the sequence go back, and the worker's own
  double-serving counter.
- kube-apiserver stopped for 60 s and started again on the same port.
- etcd stopped for 60 s and started again on the same data.
  For both: no stream's gap beyond the churn suite's bounds, no partition
  moved, no status written, no pod restarted; afterwards a new CameraStream
  goes Live and a SIGKILLed worker fails over within 5 s.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from camstream import ring
from tests.harness.cameras import RtspCamera
from tests.harness.hlscheck import PlaylistWatcher, WatchResult

from .conftest import REPO, Cluster, fresh_namespace
from .controlplane import ControlPlane, build_binaries
from .nodeagent import NodeAgent
from .services import PlaybackService
from .streamwatch import StreamStatusWatch
from .test_e2e_churn import (
    MAX_GAP,
    MAX_PUSH_GAP,
    RTSP_CAMERAS,
    _all_live,
    _check,
    _moved,
    _report,
    _ring_version,
    _settled,
    _versions,
    _watch,
    _workers,
    churn_fleet,
    rtsp_cameras,
)
from .test_operator import WORKERS, _apply, _ring, _start_operator, _stream

_FIXTURES = (rtsp_cameras,)  # imported for pytest; named here so linters keep them

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

OUTAGE = 60.0  # seconds a control-plane component stays down
CUT = 30.0  # seconds one worker's link to the API server stays cut
LEASE = 15.0  # the workers' heartbeat Lease duration
RENEW = 5.0  # and how often they renew it
FAILOVER_BOUND = 5.0


@dataclass
class Fleet:
    cluster: Cluster
    ns: str
    names: list[str]
    camera_port: int
    figures: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def outage_fleet(
    rtsp_cameras: RtspCamera,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Fleet]:
    """A control plane of the module's own, a node agent with API links, and the fleet."""
    work = tmp_path_factory.mktemp("outage-cluster")
    plane = ControlPlane(bin_dir=build_binaries(), work_dir=work, log_dir=work / "logs")
    agent: NodeAgent | None = None
    failed_before = request.session.testsfailed
    try:
        plane.start()
        agent = NodeAgent.on(plane, work / "pods", api_links=True)
        agent.start()
        cluster = Cluster(plane=plane, agent=agent, log_dir=plane.log_dir)
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "camerastream.yaml"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd/camerastreams.camstream.io", "--timeout=60s"
        )
        with fresh_namespace(cluster) as ns:
            _start_operator(cluster, ns)
            with churn_fleet(cluster, ns, work / "hls", rtsp_cameras) as names:
                port = int(rtsp_cameras.url("/cam0").rsplit(":", 1)[1].split("/", 1)[0])
                yield Fleet(cluster, ns, names, port)
    finally:
        if agent is not None:
            agent.stop()
        plane.stop(grace=1.0)  # thrown away: no need to wait for a graceful shutdown
        if request.session.testsfailed > failed_before:
            target = (
                REPO / "artifacts" / "cluster-logs" / (time.strftime("%Y%m%d-%H%M%S") + "-outages")
            )
            shutil.copytree(plane.log_dir, target, dirs_exist_ok=True)


# -- measuring -----------------------------------------------------------------


class RtspSessions:
    """Established TCP connections to the cameras' RTSP port, sampled 4 times a second.

    One per camera normally; more while a camera is read by two workers at once
    (RTSP over TCP, one connection per session). Read from /proc/net/tcp: the
    camera side of each connection has the camera's port as its local port.
    """

    def __init__(self, port: int, cameras: int) -> None:
        self._port = f"{port:04X}"
        self._cameras = cameras
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RtspSessions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def count(self) -> int:
        with open("/proc/net/tcp") as f:
            next(f)
            return sum(
                1
                for line in f
                if (parts := line.split())[1].endswith(f":{self._port}") and parts[3] == "01"
            )

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append((time.monotonic(), self.count()))

    def doubled(self, since: float) -> list[tuple[float, float, int]]:
        """Spans (start, end, most sessions) after `since` with more sessions than cameras."""
        spans: list[tuple[float, float, int]] = []
        start: float | None = None
        most = 0
        for at, n in self.samples:
            if at < since:
                continue
            if n > self._cameras:
                start = at if start is None else start
                most = max(most, n)
            elif start is not None:
                spans.append((start, at, most))
                start, most = None, 0
        if start is not None:
            spans.append((start, self.samples[-1][0], most))
        return spans


def _restarts(cluster: Cluster, ns: str) -> int:
    pods = cluster.kubectl_json("get", "pods", "-n", ns)["items"]
    return sum(
        c["restartCount"]
        for p in pods
        for c in (p.get("status") or {}).get("containerStatuses", [])
    )


def _snapshot(fleet: Fleet) -> dict[str, Any]:
    cluster, ns = fleet.cluster, fleet.ns
    lease = cluster.kubectl_json("get", "lease", "camstream-operator", "-n", ns).get("spec") or {}
    return {
        "ring": _ring(cluster, ns),
        "ring_version": _ring_version(cluster, ns),
        "versions": _versions(cluster, ns),
        "restarts": _restarts(cluster, ns),
        "lease_transitions": int(lease.get("leaseTransitions") or 0),
    }


def _changes(fleet: Fleet, before: dict[str, Any]) -> dict[str, Any]:
    after = _snapshot(fleet)
    return {
        "moved": _moved(before["ring"], after["ring"]),
        "ring_written": after["ring_version"] != before["ring_version"],
        "status_writes": sum(
            1 for n, v in after["versions"].items() if before["versions"].get(n) != v
        ),
        "pod_restarts": after["restarts"] - before["restarts"],
        "lease_transitions": after["lease_transitions"] - before["lease_transitions"],
    }


def _worst(results: dict[str, WatchResult], prefix: str) -> float:
    return round(
        max((r.longest_gap for n, r in results.items() if n.startswith(prefix)), default=0), 2
    )


def _metric(ip: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as r:
        text = r.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _pod_ip(cluster: Cluster, ns: str, pod: str) -> str:
    return str(cluster.kubectl_json("get", "pod", pod, "-n", ns)["status"]["podIP"])


def _api_answers(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def _afterwards(fleet: Fleet, tag: str) -> dict[str, float]:
    """A new CameraStream goes Live; a SIGKILLed worker fails over; its partitions come back."""
    cluster, ns, names = fleet.cluster, fleet.ns, fleet.names
    name = f"after-{tag}"
    started = time.monotonic()
    _apply(cluster, ns, _stream(name))
    cluster.wait_for(lambda: _all_live(cluster, ns, len(names) + 1), 120, 0.5, f"{name} Live")
    new_live = time.monotonic() - started
    before = cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
    victim = f"{WORKERS}-2"
    home = {p for p, owner in enumerate(before.serving) if owner == victim}
    streams = [
        n for n in [*names, name] if ring.partition_of(f"{ns}/{n}", before.partitions) in home
    ]
    with StreamStatusWatch(cluster, ns) as statuses:
        time.sleep(0.5)
        killed_at = time.monotonic()
        cluster.agent.kill(victim, ns)
        failover = statuses.wait_each(
            streams,
            killed_at,
            lambda s: s.worker not in (None, victim) and s.phase == "Live",
            30,
            f"{victim}'s streams live elsewhere",
        )
    cluster.wait_for(
        lambda: (d := _settled(cluster, ns, _workers(3))) and d.serving == before.serving,
        120,
        1.0,
        "partitions handed back",
    )
    cluster.kubectl("delete", "stream", name, "-n", ns)
    cluster.wait_for(lambda: _all_live(cluster, ns, len(names)), 60, 0.5, f"{name} deleted")
    return {"new_stream_live_s": round(new_live, 2), "failover_s": round(failover, 2)}


def _serviceaccount_delay(cluster: Cluster) -> float | None:
    """Seconds until kube-controller-manager gives a new namespace its ServiceAccount.

    Recorded, not asserted: it is the test bed's controller, not camstream
    (after a 45 s API server outage it was once seen not to within 30 s,
    which is why this module has a control plane of its own).
    """
    name = f"sa-probe-{int(time.monotonic() * 1000) % 100000}"
    cluster.kubectl("create", "namespace", name)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            sa = cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
            if sa.returncode == 0:
                return round(time.monotonic() - started, 2)
            time.sleep(0.3)
        return None
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _control_plane_outage(fleet: Fleet, component: str) -> None:
    cluster, ns, names = fleet.cluster, fleet.ns, fleet.names
    cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
    before = _snapshot(fleet)
    with PlaybackService(cluster, ns, WORKERS) as proxy, _watch(proxy, ns, names) as watcher:
        time.sleep(2)
        stopped_at = time.monotonic()
        cluster.plane.stop_component(component)
        time.sleep(OUTAGE)
        cluster.plane.start_component(component)
        down = time.monotonic() - stopped_at
        cluster.wait_for(lambda: _api_answers(cluster), 60, 0.5, "the API server answering")
        # Give heartbeats, watches and the operator's rounds time to resume and
        # to do whatever they would do wrong (fail over, rewrite statuses).
        time.sleep(LEASE)
        results = watcher.stop()
    changes = _changes(fleet, before)
    figures = {
        "down_s": round(down, 1),
        "worst_gap_pulled_s": _worst(results, "rtsp-"),
        "worst_gap_pushed_s": _worst(results, "push-"),
        **changes,
    }
    _report(f"{component} stopped for {OUTAGE:.0f} s", results, **figures)
    after = _afterwards(fleet, component.replace("kube-", ""))
    after["serviceaccount_in_new_namespace_s"] = _serviceaccount_delay(cluster)
    print(json.dumps({"scenario": f"after {component} came back", **after}))
    fleet.figures[component] = {**figures, **after}
    _check(results)
    assert changes == {
        "moved": 0,
        "ring_written": False,
        "status_writes": 0,
        "pod_restarts": 0,
        "lease_transitions": 0,
    }, changes
    assert after["failover_s"] <= FAILOVER_BOUND, after


# -- scenarios -----------------------------------------------------------------


def test_a_worker_cut_off_from_the_api_server_keeps_serving_and_hands_over(
    outage_fleet: Fleet,
) -> None:
    fleet = outage_fleet
    cluster, ns, names = fleet.cluster, fleet.ns, fleet.names
    victim = f"{WORKERS}-1"
    before = cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
    home = {p for p, owner in enumerate(before.serving) if owner == victim}
    on_victim = [n for n in names if ring.partition_of(f"{ns}/{n}", before.partitions) in home]
    pulled = [n for n in on_victim if n.startswith("rtsp-")]
    victim_ip = _pod_ip(cluster, ns, victim)
    counter = "camstream_stream_double_serving_seconds_total"
    counted_before = _metric(victim_ip, counter)
    link = cluster.agent.api_link(victim, ns)
    # Viewers: every stream through the Service, and the victim's streams
    # through the victim itself (a viewer whose connection landed there).
    stuck = {n: f"http://{victim_ip}:8080/streams/{ns}/{n}/index.m3u8" for n in on_victim}
    with (
        PlaybackService(cluster, ns, WORKERS) as proxy,
        _watch(proxy, ns, names) as watcher,
        PlaylistWatcher(stuck, interval=0.5, request_timeout=6.0) as stuck_watcher,
        RtspSessions(fleet.camera_port, RTSP_CAMERAS) as sessions,
    ):
        time.sleep(2)
        cut_at = time.monotonic()
        link.cut()

        def failed_over() -> bool:
            doc = _ring(cluster, ns)
            return doc is not None and victim not in doc.serving

        cluster.wait_for(failed_over, CUT, 0.25, f"{victim}'s partitions failed over")
        failover = time.monotonic() - cut_at
        time.sleep(max(0.0, cut_at + CUT - time.monotonic()))
        restored_at = time.monotonic()
        link.restore()
        cluster.wait_for(
            lambda: (d := _settled(cluster, ns, _workers(3))) and d.serving == before.serving,
            120,
            0.5,
            "partitions handed back",
        )
        handback = time.monotonic() - restored_at
        time.sleep(3)
        results = watcher.stop()
        stuck_results = stuck_watcher.stop()
    spans = sessions.doubled(cut_at)
    # The first span with two readers is the cut's (new owner up → the cut-off
    # worker stops its copy); the next is the hand-back's make-before-break.
    cut_span = spans[0] if spans else None
    counted = _metric(victim_ip, counter) - counted_before
    figures = {
        "victim": victim,
        "victim_streams": on_victim,
        "failover_after_cut_s": round(failover, 2),
        "handback_after_restore_s": round(handback, 2),
        "double_read_s": None if cut_span is None else round(cut_span[1] - cut_span[0], 2),
        "double_read_ended_after_restore_s": (
            None if cut_span is None else round(cut_span[1] - restored_at, 2)
        ),
        "rtsp_sessions_most": None if cut_span is None else cut_span[2],
        "double_read_spans_s": [round(b - a, 2) for a, b, _ in spans],
        "double_serving_metric_stream_s": round(counted, 1),
        "service_viewer_gap_pulled_s": _worst({n: results[n] for n in on_victim}, "rtsp-"),
        "service_viewer_gap_pushed_s": _worst({n: results[n] for n in on_victim}, "push-"),
        "stuck_viewer_gap_pulled_s": _worst(stuck_results, "rtsp-"),
        "stuck_viewer_gap_pushed_s": _worst(stuck_results, "push-"),
        "stuck_viewer_regressions": sum(r.sequence_regressions for r in stuck_results.values()),
    }
    fleet.figures["cut"] = figures
    _report(f"{victim}'s link to the API server cut for {CUT:.0f} s", results, **figures)
    # The operator judged the Lease by what it saw and waited its duration,
    # counted from the last renewal it saw: up to one period before the cut.
    assert LEASE - RENEW - 1 <= failover <= LEASE + 5, failover
    # Streams of the other workers did not notice; the victim's moved once.
    _check({n: r for n, r in results.items() if n not in on_victim})
    for name in on_victim:
        r = results[name]
        assert r.sequence_regressions == 0 and not r.ever_unreachable, r
        bound = MAX_PUSH_GAP if name.startswith("push-") else MAX_GAP
        assert r.longest_gap <= bound + 2, r  # one failover of the stream, as for a crash
    # A viewer stuck on the cut-off worker: its pulled streams never stopped
    # there, and no number ever went back, whichever worker answered. (Its
    # pushed ones stall from the failover: the relays follow the ring, and the
    # cameras move to the new owners.)
    for name, r in stuck_results.items():
        assert r.sequence_regressions == 0, r
        if name in pulled:
            assert r.longest_gap <= MAX_GAP + 2, r
    # Two readers per pulled camera from the new owner's start until the
    # cut-off worker reads the ring again, which it does within seconds.
    assert cut_span is not None and cut_span[2] <= RTSP_CAMERAS + len(pulled), spans
    assert cut_span[1] - restored_at <= 10.0, figures
    assert 0 < counted <= len(on_victim) * (CUT - LEASE + 10), figures


def test_api_server_stopped_for_60s_changes_nothing(outage_fleet: Fleet) -> None:
    _control_plane_outage(outage_fleet, "kube-apiserver")


def test_etcd_stopped_for_60s_changes_nothing(outage_fleet: Fleet) -> None:
    _control_plane_outage(outage_fleet, "etcd")
