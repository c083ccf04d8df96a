"""Recording through the cluster's life: a rolling restart and a SIGKILL (issue 11).

A module-scoped scenario beside the churn suite (it reuses the suite's
fixtures and helpers, not its file): the operator and three workers as pods
of the real control plane, recording six small synthetic cameras (1 s
segments, 10 s groups) into a real S3 store (SeaweedFS on loopback). Then:

- a rolling restart of every worker: each stream moves make-before-break,
  both owners record during the overlap, and the recorded timeline, read
  back through any worker, has no gap and no duplicate: one range, program
  date-times that follow each other, a discontinuity only where the writer
  changed, and ffprobe plays the VOD playlist through without an error;
- a SIGKILL of a worker: the victim's streams have a gap no longer than the
  failover (plus a segment), the group it was writing when killed is
  recovered from its spool when the pod is back, and the other streams
  have no gap at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camstream import ring
from camstream.storage.s3 import S3Store
from tests.harness.objectstore import BUCKET, SeaweedS3

from .conftest import Cluster
from .services import PlaybackService
from .test_e2e_churn import _all_live, _settled, _workers
from .test_operator import (
    PY,
    TOLERATIONS,
    WORKER_RULES_RELEASE,
    WORKER_RULES_STREAMS,
    WORKERS,
    P,
    _apply,
    _grant,
    _ring,
    _start_operator,
    _stream,
    crd,
)

_FIXTURES = (crd,)
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

STREAMS = [f"rec-{i}" for i in range(6)]
GAP = 1.0  # seconds: camstream.recording.timeline.GAP_MS
SEGMENT = 1.0


def _recording_workers(cluster: Cluster, ns: str, hls_root: Path, env: dict[str, str]) -> None:
    """The worker StatefulSet of test_operator, with the recordings store in its env."""
    _grant(cluster, ns, "camstream-worker", WORKER_RULES_STREAMS, WORKER_RULES_RELEASE)
    command = [
        PY, "-m", "camstream_cli", "worker", "--http-port", "8080", "--rtmp-port", "1935",
        "--hls-dir", f"{hls_root}/$(POD_NAME)", "--ring-configmap", "camstream-ring",
        "--operator-namespace", "$(POD_NAMESPACE)", "--leave-seconds", "20",
        "--watch-namespace", "$(POD_NAMESPACE)",
    ]  # fmt: skip
    _apply(cluster, ns, {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": WORKERS},
        "spec": {
            "replicas": 3, "serviceName": WORKERS, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": WORKERS}},
            "template": {
                "metadata": {"labels": {"app": WORKERS}},
                "spec": {
                    "serviceAccountName": "camstream-worker",
                    "tolerations": TOLERATIONS,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "worker", "image": "camstream", "command": command,
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                           "periodSeconds": 1, "timeoutSeconds": 5},
                    }],
                },
            },
        },
    })  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as s3:

        async def bucket() -> None:
            client = await _client(s3)
            await client.create_bucket()
            await client.close()

        asyncio.run(bucket())
        yield s3


async def _client(s3: SeaweedS3) -> S3Store:
    return await S3Store(
        endpoint=s3.endpoint, bucket=BUCKET, region="us-east-1",
        access_key=s3.access_key, secret_key=s3.secret_key,
    ).start()  # fmt: skip


@pytest.fixture(scope="module")
def recorded(
    crd: Cluster, store: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, str]]:
    cluster = crd
    ns = f"r-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.wait_for(
        lambda: cluster.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
        30,
        what="ServiceAccount default",
    )
    try:
        _start_operator(cluster, ns)
        _recording_workers(cluster, ns, tmp_path_factory.mktemp("hls"), store.env())
        for name in STREAMS:
            _apply(
                cluster, ns,
                _stream(name, recording={"enabled": True, "groupSeconds": 10, "dvrMinutes": 0}),
            )  # fmt: skip
        cluster.wait_for(lambda: _all_live(cluster, ns, len(STREAMS)), 240, 1.0, "all Live")
        cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 90, 1.0, "ring on 3")
        yield cluster, ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _get(proxy: PlaybackService, path: str) -> bytes:
    with urllib.request.urlopen(proxy.url + path, timeout=30) as response:
        return bytes(response.read())


def _ranges(proxy: PlaybackService, ns: str, name: str, start: float, end: float) -> list[Any]:
    path = f"/streams/{ns}/{name}/recordings/ranges.json?from={start}&to={end}"
    return list(json.loads(_get(proxy, path))["ranges"])


def _vod(proxy: PlaybackService, ns: str, name: str, start: float, end: float) -> list[dict]:
    text = _get(proxy, f"/streams/{ns}/{name}/recordings/index.m3u8?from={start}&to={end}")
    entries: list[dict[str, Any]] = []
    item: dict[str, Any] = {"discontinuity": False}
    for line in text.decode().splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            item["discontinuity"] = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            moment = line.split(":", 1)[1].replace("Z", "+00:00")
            item["pdt"] = dt.datetime.fromisoformat(moment).timestamp()
        elif line.startswith("#EXTINF:"):
            item["duration"] = float(line[8:].rstrip(","))
        elif line and not line.startswith("#"):
            entries.append({**item, "writer": line.rsplit("-", 1)[0].split("-", 3)[-1]})
            item = {"discontinuity": False}
    return entries


def _timeline_problems(entries: list[dict], *, allowed_gap: float = GAP) -> list[str]:
    """Gaps, duplicates and unmarked changes of writer in a recorded timeline."""
    problems = []
    for a, b in itertools.pairwise(entries):
        end = a["pdt"] + a["duration"]
        if b["pdt"] - end > allowed_gap:
            problems.append(f"gap of {b['pdt'] - end:.2f} s at {b['pdt']:.1f}")
        if end - b["pdt"] > SEGMENT / 2 + 0.05:  # the merge's replay bound for 1 s segments
            problems.append(f"duplicate of {end - b['pdt']:.2f} s at {b['pdt']:.1f}")
        if a["writer"] != b["writer"] and not b["discontinuity"]:
            problems.append(f"writer changed without a discontinuity at {b['pdt']:.1f}")
    return problems


def _worker_url(cluster: Cluster, ns: str, index: int) -> str:
    """A worker pod's own address: the playback stand-in does not pass Range headers on,
    and ffprobe reads the byte ranges of a VOD playlist with them."""
    pod = cluster.kubectl_json("get", "pod", f"{WORKERS}-{index}", "-n", ns)
    return f"http://{pod['status']['podIP']}:8080"


def _ffprobe_plays(base: str, ns: str, name: str, start: float, end: float) -> int:
    """Video packets ffprobe reads from the VOD playlist; it must read it without an error."""
    url = f"{base}/streams/{ns}/{name}/recordings/index.m3u8?from={start}&to={end}"
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-count_packets",
         "-show_entries", "stream=nb_read_packets", "-of", "json", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-2000:]
    return int(json.loads(out.stdout)["streams"][0]["nb_read_packets"])


def _uploaded_until(proxy: PlaybackService, ns: str, moment: float, timeout: float) -> None:
    """Wait until every stream's recording reaches past `moment` (groups are 10 s)."""

    def reaches(name: str) -> bool:
        spans = _ranges(proxy, ns, name, moment - 600, moment + 600)
        return any(r["end_ms"] / 1000 > moment for r in spans)

    def done() -> bool:
        return all(reaches(n) for n in STREAMS)

    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "recordings did not reach the store"
        time.sleep(2)


def test_kubectl_shows_recording_and_the_api_server_checks_it(
    recorded: tuple[Cluster, str],
) -> None:
    cluster, ns = recorded
    lines = cluster.kubectl("get", "streams", "-n", ns, "-o", "wide").stdout.splitlines()
    header = lines[0]
    assert "RECORDING" in header.split() and "KEEP-HOURS" in header.split()
    # Cut at the header's column starts: a cell may be empty.
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    row = {header[a:b].strip(): lines[1][a:b].strip() for a, b in bounds}
    assert (row["RECORDING"], row["KEEP-HOURS"]) == ("true", "168")
    bad = _stream("bad-size", recording={"enabled": True, "retention": {"maxSize": "10GB"}})
    result = cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False
    )  # fmt: skip
    assert result.returncode != 0
    # The same words as camstream/spec.py's, from the CRD's CEL rule.
    assert "spec.recording.retention.maxSize: must be a size like 500Mi or 20Gi" in result.stderr


def test_a_rolling_restart_leaves_one_recorded_timeline_per_stream(
    recorded: tuple[Cluster, str],
) -> None:
    cluster, ns = recorded
    with PlaybackService(cluster, ns, WORKERS) as proxy:
        time.sleep(12)
        start = time.time() - 10
        cluster.kubectl("rollout", "restart", "statefulset", WORKERS, "-n", ns)
        cluster.kubectl(
            "rollout", "status", "statefulset", WORKERS, "-n", ns, "--timeout=300s", timeout=320
        )
        cluster.wait_for(lambda: _settled(cluster, ns, _workers(3)), 120, 1.0, "ring settled")
        end = time.time()
        _uploaded_until(proxy, ns, end, 90)
        figures = {}
        for i, name in enumerate(STREAMS):
            spans = _ranges(proxy, ns, name, start, end)
            assert len(spans) == 1, f"{name}: the restart left a gap: {spans}"
            entries = _vod(proxy, ns, name, start, end)
            assert not _timeline_problems(entries), (name, _timeline_problems(entries))
            writers = {e["writer"] for e in entries}
            assert len(writers) >= 2, f"{name} never moved: {writers}"  # it did change owner
            recorded_s = sum(e["duration"] for e in entries)
            # From any worker: each stream is read through a different one.
            packets = _ffprobe_plays(_worker_url(cluster, ns, i % 3), ns, name, start, end)
            assert abs(packets - 10 * recorded_s) <= 10 * (len(writers) + 1), (packets, recorded_s)
            figures[name] = {"writers": len(writers), "seconds": round(recorded_s, 1)}
        print("\n" + json.dumps({"scenario": "recording through a rolling restart", **figures}))


def test_a_sigkill_loses_at_most_the_failover(recorded: tuple[Cluster, str]) -> None:
    cluster, ns = recorded
    victim = f"{WORKERS}-1"
    before = _ring(cluster, ns)
    home = {p for p, owner in enumerate(before.serving) if owner == victim}
    on_victim = [n for n in STREAMS if ring.partition_of(f"{ns}/{n}", P) in home]
    with PlaybackService(cluster, ns, WORKERS) as proxy:
        time.sleep(15)  # the victim has a group open, part written
        start = time.time() - 10
        killed_at = time.time()
        cluster.agent.kill(victim, ns)

        def moved() -> bool:
            items = {i["metadata"]["name"]: i.get("status") or {} for i in
                     cluster.kubectl_json("get", "streams", "-n", ns)["items"]}  # fmt: skip
            return all(
                items[n].get("worker") not in (None, victim) and items[n].get("phase") == "Live"
                for n in on_victim
            )

        cluster.wait_for(moved, 60, 0.2, "the victim's streams live elsewhere")
        failover = time.time() - killed_at
        # The pod restarts in place; its partitions come back, and with them
        # the group it was writing when killed (closed from its journal).
        cluster.wait_for(
            lambda: (d := _settled(cluster, ns, _workers(3))) and d.serving == before.serving,
            180, 1.0, "partitions handed back",
        )  # fmt: skip
        end = time.time()
        _uploaded_until(proxy, ns, end, 90)
        report = {}
        for name in STREAMS:
            entries = _vod(proxy, ns, name, start, end)
            if name in on_victim:
                # Recorded up to the kill: the killed group was recovered, not lost.
                assert any(
                    killed_at - 3 <= e["pdt"] + e["duration"] <= killed_at + 1 for e in entries
                ), name
                problems = _timeline_problems(entries, allowed_gap=failover + SEGMENT + GAP)
            else:
                problems = _timeline_problems(entries)
            assert not problems, (name, problems)
            gaps = [
                round(b["pdt"] - a["pdt"] - a["duration"], 2)
                for a, b in itertools.pairwise(entries)
            ]
            report[name] = max(gaps, default=0.0)
        print("\n" + json.dumps({
            "scenario": "recording through a SIGKILL", "failover_s": round(failover, 2),
            "victim_streams": on_victim, "longest_gap_s": report,
        }))  # fmt: skip
    assert on_victim, "the victim served none of the streams: nothing was tested"
