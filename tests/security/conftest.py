"""Shared set-up of the bad-input suite (marker ``security``): real workers under attack.

Every test here attacks a real standalone worker (``camstream run``, see
tests/media/worker_process.py) over loopback while a healthy camera (FFmpeg
looping a clip over RTMP) keeps publishing to it, and checks what an operator
would: the worker stays up, the healthy stream keeps producing segments, memory
stays bounded, no secret shows anywhere, and the attacker is refused clearly.

What this file offers (small on purpose; attack-specific clients live with
their tests, the raw RTMP client in tests/harness/rtmp_client.py):

- ``start_worker``: a function-scoped factory of workers, stopped afterwards
  (the same one tests/media has; pass ``env=`` or ``nofile=`` for limits).
- ``running_worker``: a context manager for module-scoped workers shared by
  attacks that do not interfere.
- ``HEALTHY``/``healthy_camera``: the manifests and the FFmpeg camera of the
  stream every attack must leave alone; ``rtmp_stream`` for others.
- ``Watch``: while an attack runs, samples in threads the healthy stream's
  playlist on disk (the gaps between new segments; not over HTTP, which an
  attack might stall), the worker's RSS with its engine processes, and
  /healthz latency.
- ``rejections`` (camstream_rtmp_rejected_total by reason) and
  ``assert_no_secrets`` (log, /api/streams, /metrics).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness.cameras import RtmpPusher
from tests.harness.hlscheck import HlsError, parse_media_playlist
from tests.media.worker_process import WorkerProcess, camera_stream, secret

HEALTHY_KEY = "h3althy-k3y-7d1e0c"


def rtmp_stream(name: str, key: str, **source: Any) -> list[dict[str, Any]]:
    """A pushed stream and the Secret with its key."""
    ref = {"name": f"{name}-key"}
    return [
        camera_stream(name, {"protocol": "rtmp", "streamKeySecretRef": ref, **source}),
        secret(f"{name}-key", streamKey=key),
    ]


HEALTHY = rtmp_stream("healthy", HEALTHY_KEY)
SEGMENT_SECONDS = 2  # the streams' default; the clip's GOP is 2 s too
# A healthy stream cuts a segment every 2 s; three segment durations without
# one means it was disturbed (the attacks of issue 8 caused 8 s to 45 s).
MAX_SEGMENT_GAP = 3 * SEGMENT_SECONDS


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `camstream run` on the manifests; stopped (by its PID) at the end of the test."""
    started: list[WorkerProcess] = []

    def start(manifests: list[dict[str, Any]], **options: Any) -> WorkerProcess:
        worker = WorkerProcess(manifests, tmp_path / f"worker{len(started)}", **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@contextlib.contextmanager
def running_worker(
    manifests: list[dict[str, Any]], workdir: Path, **options: Any
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(manifests, workdir, **options)
    try:
        yield worker.start()
    finally:
        worker.stop()


@contextlib.contextmanager
def healthy_camera(worker: WorkerProcess) -> Iterator[RtmpPusher]:
    """The healthy stream's camera, publishing until the block ends; waits until Live."""
    with RtmpPusher(worker.rtmp_url("healthy", HEALTHY_KEY), clip=True) as camera:
        worker.wait_for("healthy", phase="Live", timeout=40)
        yield camera


def worker_rss(pid: int) -> int:
    """Resident memory of a worker and its engine processes, in bytes."""
    process = psutil.Process(pid)
    total = 0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += each.memory_info().rss
    return total


class Watch:
    """Samples a worker while an attack runs (use as a context manager)."""

    def __init__(
        self, worker: WorkerProcess, stream: str = "healthy", *, health: bool = True
    ) -> None:
        """`health=False`: no /healthz probes (they need new connections)."""
        self._worker = worker
        self._health_probes = health
        self._playlist = worker.hls_dir / "default" / stream / "index.m3u8"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.segment_times: list[float] = []
        self.rss_start = self.rss_peak = 0
        self.health_worst = 0.0
        self.started = self.ended = 0.0

    def __enter__(self) -> Watch:
        self.rss_start = self.rss_peak = worker_rss(self._worker.pid)
        self.started = time.monotonic()
        probes = (self._segments, self._rss, *((self._health,) if self._health_probes else ()))
        for target in probes:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        # A watch shorter than the gap it allows proves nothing either way: an
        # attack refused in a second left "no new segment" to chance (CI saw it).
        time.sleep(max(0.0, self.started + MAX_SEGMENT_GAP - time.monotonic()))
        self.ended = time.monotonic()
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    @property
    def max_gap(self) -> float:
        """The longest time without a new segment, from the start to the end of the watch."""
        marks = [self.started, *self.segment_times, self.ended or time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(marks))

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_start

    def assert_undisturbed(self, *, rss_growth_mb: float) -> None:
        """The healthy stream kept its cadence, memory stayed bounded, /healthz answered."""
        assert self._worker.alive, f"the worker died:\n{self._worker.log()[-3000:]}"
        assert self.segment_times, "the healthy stream wrote no segment during the attack"
        assert self.max_gap < MAX_SEGMENT_GAP, f"healthy stream gap {self.max_gap:.1f} s"
        growth = self.rss_growth / 2**20
        assert growth < rss_growth_mb, f"RSS grew {growth:.0f} MB (bound {rss_growth_mb} MB)"
        assert self.health_worst < 2.0, f"/healthz took {self.health_worst:.1f} s"

    def figures(self) -> str:
        return (
            f"segments {len(self.segment_times)}, max gap {self.max_gap:.1f} s, "
            f"RSS {self.rss_start / 2**20:.0f} → peak {self.rss_peak / 2**20:.0f} MB, "
            f"/healthz worst {self.health_worst * 1000:.0f} ms"
        )

    def _segments(self) -> None:
        last = None
        while not self._stop.wait(0.1):
            try:
                playlist = parse_media_playlist(self._playlist.read_text())
            except (OSError, HlsError):
                continue
            if playlist.segments:
                newest = playlist.segments[-1].sequence
                if last is not None and newest > last:
                    self.segment_times.append(time.monotonic())
                last = newest

    def _rss(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(psutil.Error):
                self.rss_peak = max(self.rss_peak, worker_rss(self._worker.pid))

    def _health(self) -> None:
        url = self._worker.base_url + "/healthz"
        while not self._stop.wait(0.25):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
            except OSError:
                pass  # counted as slow as the timeout
            self.health_worst = max(self.health_worst, time.monotonic() - started)


def rejections(worker: WorkerProcess) -> dict[str, float]:
    """camstream_rtmp_rejected_total by reason, as /metrics shows it now."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(worker.get("/metrics").decode()):
        if family.name == "camstream_rtmp_rejected":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


def rejected_since(worker: WorkerProcess, before: dict[str, float]) -> dict[str, float]:
    """The refusals by reason since `before` (a `rejections` reading); zeros left out."""
    now = rejections(worker)
    return {r: now[r] - before.get(r, 0) for r in now if now[r] > before.get(r, 0)}


def assert_no_secrets(worker: WorkerProcess, *secrets: str) -> None:
    """None of `secrets` in the worker's log, its status API or its metrics."""
    places = {
        "log": worker.log(),
        "/api/streams": worker.get("/api/streams").decode(),
        "/metrics": worker.get("/metrics").decode(),
    }
    for secret_value in secrets:
        for place, text in places.items():
            assert secret_value not in text, f"a secret appears in {place}"
