"""The worker's processes: a front and one engine per `--processes`, nothing else.

A worker in front of thousands of cameras pays every process's baseline
memory once per node: the front (HTTP, the RTMP port) must not load PyAV,
which only the engines use, and no helper process may run beside them
(multiprocessing's spawn used to start its resource tracker, ~7 MB). Engines
must not outlive the front, however it ends: stopped, or killed outright.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.harness.cameras import RtmpPusher
from tests.media.worker_process import camera_stream, secret

pytestmark = pytest.mark.media

ENGINE_MODULE = "camstream_worker.pool.child"


def _rtmp_stream(name: str) -> list[dict]:
    return [
        camera_stream(name, {"protocol": "rtmp", "streamKeySecretRef": {"name": f"{name}-key"}}),
        secret(f"{name}-key", streamKey=f"{name}-k3y"),
    ]


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def test_a_front_and_its_engines_and_nothing_else(start_worker) -> None:
    worker = start_worker(_rtmp_stream("door"), processes=2)
    with RtmpPusher(worker.rtmp_url("door", "door-k3y"), clip=True):
        worker.wait_for("door", phase="Live")
        worker.wait_segments("door", 1)
        front = psutil.Process(worker.pid)
        children = front.children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert len(children) == 2, commands
        assert all(ENGINE_MODULE in command for command in commands), commands
        assert not any("resource_tracker" in command for command in commands), commands
        # The engines mux with PyAV (FFmpeg's libraries are mapped); the front never
        # touches a packet and does not load them.
        assert all("libavformat" in _maps(child.pid) for child in children)
        assert "libavformat" not in _maps(front.pid)
    assert worker.stop() == 0
    assert not _wait_gone(children, 5), "an engine process outlived its front"


def test_engines_exit_when_the_front_is_killed(start_worker) -> None:
    worker = start_worker(_rtmp_stream("gate"), processes=2)
    worker.wait_for("gate", phase="Connecting")
    front = psutil.Process(worker.pid)
    children = front.children(recursive=True)
    assert len(children) == 2
    started = time.monotonic()
    front.send_signal(signal.SIGKILL)
    # No atexit runs in a killed front: each engine sees its control pipe close.
    alive = _wait_gone(children, 10)
    assert not alive, f"engine processes left running: {[p.pid for p in alive]}"
    assert time.monotonic() - started < 10
