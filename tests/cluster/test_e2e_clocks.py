"""End-to-end churn with clocks that disagree (#14): nothing may depend on them.

One fleet for the module — the churn suite's operator, 3 workers and 22
streams from real cameras — where clocks are off as they are after a VM pause
or with a bad NTP source (libfaketime, tests/cluster/faketime.py):

- worker-1's clock runs 8 s ahead and worker-2's 8 s behind (the node agent
  starts their processes under libfaketime: a node with a bad clock);
  worker-0's is right;
- the operator runs two replicas: `camstream-operator` on time and
  `camstream-operator-skewed`, a Deployment of its own whose pod has
  libfaketime in its env, 8 s ahead in the first scenario and 8 s behind in
  the second.

Each scenario makes the skewed replica the leader the hard way (the on-time
leader is paused with SIGSTOP; the skewed one takes over once it has seen
the Lease unchanged for its duration: 13-19 s after the pause, whatever the
clocks), then checks, for 30 s without any fault, that no partition moves,
nothing is written and exactly one replica acts; then SIGKILLs the worker
whose clock is off the same way: its streams must be live elsewhere within
5 s and come back when it restarts, and no viewer may see a media sequence
go backwards although the workers that take over number their segments by
clocks 8 or 16 s apart.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from camstream import ring
from tests.harness.cameras import RtspCamera

from .conftest import Cluster, fresh_namespace
from .faketime import skewed_env
from .services import PlaybackService
from .streamwatch import StreamStatusWatch
from .test_e2e_churn import (
    MAX_GAP,
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
from .test_operator import WORKERS, _ring, _start_operator, crd

_FIXTURES = (crd, rtsp_cameras)  # imported for pytest; named here so linters keep them

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

SKEW = 8  # seconds
OPERATOR = "camstream-operator"
SKEWED = "camstream-operator-skewed"
LEASE = "camstream-operator"  # the leader Lease both Deployments compete for
QUIET = 30.0  # seconds without a fault in which nothing may move
FAILOVER_BOUND = 5.0
# Takeover by observation: the stand-by takes over once it has seen the Lease
# unchanged for its duration (15 s), reading it every 2 s; the dead leader last
# renewed up to 2 s before the kill. A stand-by comparing the leader's
# renewTime with its own clock would take over 8 s early or late instead.
TAKEOVER_BOUNDS = (12.0, 25.0)
WORKER_SKEWS = {f"{WORKERS}-1": +SKEW, f"{WORKERS}-2": -SKEW}


@pytest.fixture(scope="module")
def skewed_fleet(
    crd: Cluster, rtsp_cameras: RtspCamera, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, str, list[str]]]:
    cluster = crd
    with fresh_namespace(cluster) as ns:
        for pod, offset in WORKER_SKEWS.items():
            cluster.agent.set_pod_env(pod, ns, skewed_env(offset))
        _start_operator(cluster, ns)
        _start_skewed_operator(cluster, ns, +SKEW)
        try:
            hls = tmp_path_factory.mktemp("hls")
            with churn_fleet(cluster, ns, hls, rtsp_cameras) as names:
                yield cluster, ns, names
        finally:
            for name in (OPERATOR, SKEWED):
                cluster.kubectl("delete", "deployment", name, "-n", ns, "--wait=false", check=False)


def _start_skewed_operator(cluster: Cluster, ns: str, offset: int) -> None:
    """A second operator Deployment like the first, its clock `offset` seconds off."""
    template = cluster.kubectl_json("get", "deployment", OPERATOR, "-n", ns)["spec"]["template"]
    template["metadata"] = {"labels": {"app": SKEWED}}
    container = template["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in skewed_env(offset).items()]
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SKEWED},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": SKEWED}}, "template": template},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def _set_skew(cluster: Cluster, ns: str, offset: int) -> None:
    """Restart the skewed replica with another offset, as a stand-by.

    Scaled to 0 first, so it releases the Lease if it led and the on-time
    replica takes it; the new pod then has to take over the hard way.
    """
    deployment = cluster.kubectl_json("get", "deployment", SKEWED, "-n", ns)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    want = [{"name": k, "value": v} for k, v in skewed_env(offset).items()]
    if env == want:
        return
    cluster.kubectl("scale", "deployment", SKEWED, "-n", ns, "--replicas=0")
    cluster.wait_for(
        lambda: not cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"app={SKEWED}")["items"],
        60,
        0.5,
        "the skewed replica gone",
    )

    def on_time_leads() -> bool:
        pods = _operator_pods(cluster, ns)
        holder = _lease(cluster, ns).get("holderIdentity") or ""
        return pods.get(holder, {}).get("app") == OPERATOR

    cluster.wait_for(on_time_leads, 60, 0.5, "the on-time replica leading")
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/env", "value": want},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]
    cluster.kubectl("patch", "deployment", SKEWED, "-n", ns, "--type=json", "-p", json.dumps(patch))
    cluster.kubectl(
        "rollout", "status", "deployment", SKEWED, "-n", ns, "--timeout=120s", timeout=130
    )


def _operator_pods(cluster: Cluster, ns: str) -> dict[str, dict[str, str]]:
    """Running, not terminating operator pods: {name: {"app": ..., "ip": ...}}."""
    selector = f"app in ({OPERATOR},{SKEWED})"
    pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
    return {
        p["metadata"]["name"]: {"app": p["metadata"]["labels"]["app"], "ip": p["status"]["podIP"]}
        for p in pods
        if p["status"].get("phase") == "Running"
        and p["status"].get("podIP")
        and not p["metadata"].get("deletionTimestamp")
    }


def _both_running(cluster: Cluster, ns: str) -> dict[str, dict[str, str]] | None:
    pods = _operator_pods(cluster, ns)
    apps = sorted(p["app"] for p in pods.values())
    return pods if apps == [OPERATOR, SKEWED] else None


def _lease(cluster: Cluster, ns: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "lease", LEASE, "-n", ns).get("spec") or {})


def _leader_gauges(pods: dict[str, dict[str, str]]) -> dict[str, float]:
    """camstream_operator_leader of every replica, from its /metrics."""
    out = {}
    for name, pod in pods.items():
        with urllib.request.urlopen(f"http://{pod['ip']}:8081/metrics", timeout=10) as r:
            text = r.read().decode()
        match = re.search(r"^camstream_operator_leader (\S+)$", text, re.MULTILINE)
        out[name] = float(match.group(1)) if match else -1.0
    return out


def _make_skewed_lead(cluster: Cluster, ns: str) -> float | None:
    """Pause the on-time leader so the skewed replica takes over; the takeover time.

    SIGSTOP, as a VM pause or a long GC would: the paused leader renews
    nothing, and the stand-by takes over once it has seen the Lease unchanged
    for its duration. (A forced delete would race the stand-by against the
    replacement pod, which also gives a Lease it sees first a full duration.)
    Then the paused process is SIGKILLed and its pod restarts it as a stand-by.
    """
    pods = cluster.wait_for(lambda: _both_running(cluster, ns), 120, 1.0, "both replicas")
    holder = cluster.wait_for(
        lambda: (h := _lease(cluster, ns).get("holderIdentity")) in pods and h, 60, 0.5, "a leader"
    )
    if pods[holder]["app"] == SKEWED:
        return None
    paused_at = time.monotonic()
    cluster.agent.kill(holder, ns, sig=signal.SIGSTOP)

    def skewed_leads() -> bool:
        return pods.get(_lease(cluster, ns).get("holderIdentity") or "", {}).get("app") == SKEWED

    try:
        cluster.wait_for(skewed_leads, 90, 0.25, "the skewed replica leading")
    finally:
        cluster.agent.kill(holder, ns, sig=signal.SIGKILL)
    return time.monotonic() - paused_at


def _restarts(cluster: Cluster, ns: str) -> dict[str, int]:
    pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"app={WORKERS}")["items"]
    return {
        p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"])
        for p in pods
    }


def _victim_streams(ns: str, names: list[str], doc: Any, victim: str) -> list[str]:
    home = {p for p, owner in enumerate(doc.serving) if owner == victim}
    return [n for n in names if ring.partition_of(f"{ns}/{n}", doc.partitions) in home]


def _failover(cluster: Cluster, ns: str, victim: str, streams: list[str]) -> float:
    """SIGKILL `victim`; seconds until each of its streams had been Live on another worker."""
    with StreamStatusWatch(cluster, ns) as statuses:
        time.sleep(0.5)  # the watch has listed
        killed_at = time.monotonic()
        cluster.agent.kill(victim, ns)
        return statuses.wait_each(
            streams,
            killed_at,
            lambda s: s.worker not in (None, victim) and s.phase == "Live",
            30,
            f"{victim}'s streams live elsewhere",
        )


@pytest.mark.parametrize("skew", [+SKEW, -SKEW], ids=["ahead", "behind"])
def test_clocks_off_move_nothing_and_a_crash_fails_over(
    skewed_fleet: tuple[Cluster, str, list[str]], skew: int
) -> None:
    cluster, ns, names = skewed_fleet
    victim = next(pod for pod, offset in WORKER_SKEWS.items() if offset == skew)
    _set_skew(cluster, ns, skew)
    takeover = _make_skewed_lead(cluster, ns)
    pods = cluster.wait_for(lambda: _both_running(cluster, ns), 120, 1.0, "both replicas again")
    before = cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
    with PlaybackService(cluster, ns, WORKERS) as proxy, _watch(proxy, ns, names) as watcher:
        # 1. Nothing wrong for 30 s: nothing moves, nothing is written, one replica acts.
        ring_version, versions = _ring_version(cluster, ns), _versions(cluster, ns)
        lease, restarts = _lease(cluster, ns), _restarts(cluster, ns)
        time.sleep(QUIET)
        quiet = {
            "moved": _moved(before, _ring(cluster, ns)),
            "ring_written": _ring_version(cluster, ns) != ring_version,
            "status_writes": sum(
                1 for n, v in _versions(cluster, ns).items() if versions.get(n) != v
            ),
            "lease_transitions": int(_lease(cluster, ns).get("leaseTransitions") or 0)
            - int(lease.get("leaseTransitions") or 0),
            "leaders": _leader_gauges(pods),
            "pod_restarts": sum(_restarts(cluster, ns).values()) - sum(restarts.values()),
        }
        holder = _lease(cluster, ns).get("holderIdentity")
        # 2. The skewed worker crashes: its streams go to workers whose clocks differ.
        doc = _ring(cluster, ns)
        on_victim = _victim_streams(ns, names, doc, victim)
        failover = _failover(cluster, ns, victim, on_victim)
        handback_from = time.monotonic()
        cluster.wait_for(
            lambda: (d := _settled(cluster, ns, _workers(3))) and d.serving == before.serving,
            120,
            1.0,
            "partitions handed back",
        )
        handback = time.monotonic() - handback_from
        time.sleep(3)
        results = watcher.stop()
    _report(
        f"clocks: operator replica {skew:+d} s leading, {victim} ({skew:+d} s) SIGKILLed",
        results,
        takeover_s=None if takeover is None else round(takeover, 2),
        quiet_30s=quiet,
        failover_s=round(failover, 2),
        victim_streams=on_victim,
        handback_s=round(handback, 2),
    )
    if takeover is not None:
        assert TAKEOVER_BOUNDS[0] <= takeover <= TAKEOVER_BOUNDS[1], takeover
    assert quiet["moved"] == 0 and not quiet["ring_written"], quiet
    assert quiet["status_writes"] == 0 and quiet["pod_restarts"] == 0, quiet
    assert quiet["lease_transitions"] == 0, quiet
    assert sorted(quiet["leaders"].values()) == [0.0, 1.0], quiet
    assert quiet["leaders"][holder] == 1.0 and pods[holder]["app"] == SKEWED, (holder, quiet)
    assert failover <= FAILOVER_BOUND, failover
    # The victim's streams were cut for the failover; no viewer may see them go back.
    _check({n: r for n, r in results.items() if n not in on_victim})
    for name in on_victim:
        r = results[name]
        assert r.sequence_regressions == 0, r
        assert r.longest_gap <= failover + MAX_GAP + 2, r
