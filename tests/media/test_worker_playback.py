"""Playback as a person sees it: hls.js in headless Chromium plays the worker's
own player page, fed by a real RTMP camera, without stalling; and the demo
(the README's first command) starts streams that play.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness.cameras import RtmpPusher, free_port
from tests.harness.player import play
from tests.media.worker_process import camera_stream, secret

pytestmark = pytest.mark.media


def test_player_page_plays_a_live_camera_without_stalling(start_worker) -> None:
    worker = start_worker(
        [
            camera_stream("hall", {"protocol": "rtmp", "streamKeySecretRef": {"name": "hall-key"}}),
            secret("hall-key", streamKey="hall-k3y"),
        ]
    )
    with RtmpPusher(worker.rtmp_url("hall", "hall-k3y"), clip=True):
        worker.wait_for("hall", phase="Live")
        worker.wait_segments("hall", 2)
        result = play(f"{worker.base_url}/streams/default/hall/", 12, name="worker-player-hall")
    assert result.started, result
    assert result.fatal_errors == (), result.errors
    assert result.played >= 9, result  # 12 s watched, a little start-up slack
    assert result.stalls == 0 and result.longest_freeze < 2.0, result
    assert result.video_size == (640, 360)
    assert result.screenshot_path is not None and result.screenshot_path.exists()


def test_demo_starts_cameras_that_play(tmp_path: Path) -> None:
    http_port, rtmp_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "camstream_cli",
                "demo",
                "--cameras",
                "2",
                "--http-port",
                str(http_port),
                "--rtmp-port",
                str(rtmp_port),
                "--hls-dir",
                str(tmp_path / "hls"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        streams: dict[str, dict] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/streams") as r:
                    streams = {s["name"]: s for s in json.load(r)}
            except OSError:
                pass
            if streams and all(s["phase"] == "Live" for s in streams.values()):
                break
            time.sleep(0.5)
        text = log_path.read_text()
        assert f"open http://127.0.0.1:{http_port}/" in text, text
        assert {"rtmp-cam1", "rtmp-cam2", "synthetic"} <= set(streams), streams
        assert all(s["phase"] == "Live" for s in streams.values()), streams
        # The publisher with the wrong key was refused, without its key in the log.
        assert "wrong stream key" in text
        assert not re.search(r"rtmp-cam1/wrong-key", text)
        result = play(
            f"http://127.0.0.1:{http_port}/streams/default/rtmp-cam2/", 6, name="demo-rtmp-cam2"
        )
        assert result.started and result.fatal_errors == (), result
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
