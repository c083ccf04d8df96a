"""Faults: each bad camera or client gets a clear state and reason, and never
disturbs the other streams of the worker.

One worker runs a healthy RTMP camera throughout while, beside it, streams
point at an unreachable host, a camera with the wrong password, a recording in
a codec we cannot remux and a publisher with the wrong key, and garbage
clients hit the RTMP port. Separate tests cover a camera that restarts (the
playlist carries a discontinuity and keeps its media sequence) and a camera
that stalls (the watchdog reconnects).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from camstream_worker.errors import UNREACHABLE
from tests.harness.cameras import GarbageClient, HarnessError, RtmpPusher, RtspCamera, free_port
from tests.media.worker_process import camera_stream, secret

pytestmark = pytest.mark.media

RTMP = {"protocol": "rtmp"}


def rtmp_stream(name: str, **extra) -> dict:
    return camera_stream(name, {**RTMP, "streamKeySecretRef": {"name": f"{name}-key"}, **extra})


def rtmp_rejections(worker) -> dict[str, float]:
    """camstream_rtmp_rejected_total by reason, once the engines have reported (1 s)."""
    from prometheus_client.parser import text_string_to_metric_families

    time.sleep(1.5)
    text = worker.get("/metrics").decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "camstream_rtmp_rejected":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


def mpeg4_recording(path: Path) -> Path:
    """A recording in MPEG-4 Part 2 video, which HLS players cannot take as is."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "4",
            "-c:v",
            "mpeg4",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


def test_bad_cameras_and_clients_never_disturb_a_healthy_stream(start_worker, tmp_path) -> None:
    with RtspCamera(mounts={"/cam1": "h264+aac"}, user="admin", password="right-pass") as camera:
        worker = start_worker(
            [
                rtmp_stream("healthy"),
                secret("healthy-key", streamKey="healthy-k3y"),
                rtmp_stream("victim"),
                secret("victim-key", streamKey="victim-k3y"),
                camera_stream(
                    "nowhere", {"protocol": "rtsp", "url": f"rtsp://127.0.0.1:{free_port()}/cam"}
                ),
                camera_stream(
                    "locked",
                    {
                        "protocol": "rtsp",
                        "url": camera.url("/cam1"),
                        "credentialsSecretRef": {"name": "locked-creds"},
                        "allowInsecureCredentials": True,
                    },
                ),
                secret("locked-creds", username="admin", password="wrong-pass"),
                camera_stream(
                    "oldcodec",
                    {"protocol": "file", "url": str(mpeg4_recording(tmp_path / "old.mp4"))},
                ),
                camera_stream(
                    "nosecret",
                    {
                        "protocol": "rtsp",
                        "url": camera.url("/cam1"),
                        "credentialsSecretRef": {"name": "missing"},
                        "allowInsecureCredentials": True,
                    },
                ),
            ],
            extra_args=("--file-root", str(tmp_path)),
        )
        with RtmpPusher(worker.rtmp_url("healthy", "healthy-k3y"), clip=True):
            worker.wait_for("healthy", phase="Live")

            unreachable = worker.wait_for("nowhere", phase="Reconnecting")
            assert unreachable["reason"] == "SourceUnreachable"
            assert unreachable["message"] == UNREACHABLE  # the one answer (errors.py)
            locked = worker.wait_for("locked", phase="Failed")
            assert locked["reason"] == "AuthenticationFailed"
            unsupported = worker.wait_for("oldcodec", phase="Failed")
            assert unsupported["reason"] == "UnsupportedMedia"
            assert "mpeg4" in unsupported["message"]
            missing = worker.wait_for("nosecret", phase="Failed")
            assert missing["reason"] == "SecretMissing"

            # A publisher with the wrong key is refused; the stream keeps waiting.
            intruder = RtmpPusher(worker.rtmp_url("victim", "guessed-key"), clip=True)
            try:
                intruder.start()
            except HarnessError:
                pass  # refused before it could send a frame: what we want
            else:
                deadline = time.monotonic() + 10
                while intruder.running and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert not intruder.running, "a publisher with a wrong key was not dropped"
            finally:
                intruder.cleanup()
            victim = worker.stream("victim")
            assert victim["phase"] == "Connecting"  # still waiting for its real camera
            assert victim["reason"] == "WrongStreamKey", victim

            # An unsupported codec pushed over RTMP: a clear reason on that stream only.
            flv1 = RtmpPusher(worker.rtmp_url("victim", "victim-k3y"), codec="flv1")
            try:
                flv1.start()
            except HarnessError:
                pass  # FFmpeg may exit at once when the worker hangs up: fine
            victim = worker.wait_for("victim", phase="Failed", timeout=20)
            assert victim["reason"] == "UnsupportedMedia"
            flv1.cleanup()

            # Garbage on the RTMP port: every bad connection is closed.
            garbage = GarbageClient(worker.rtmp_port, seed=7)
            assert garbage.random_bytes(hold=5)
            assert garbage.bad_rtmp_version(hold=5)
            assert garbage.http_request(hold=5)

            # ...and counted, by reason, for the worker's alerts.
            rejected = rtmp_rejections(worker)
            assert rejected["unauthorized"] >= 1 and rejected["protocol"] >= 3, rejected

            before = worker.stream("healthy")
            worker.wait_segments("healthy", 2)
            after = worker.stream("healthy")
        assert after["phase"] == "Live"
        assert after["reconnects"] == before["reconnects"] == 0
    log = worker.log()
    for secret_value in ("healthy-k3y", "victim-k3y", "wrong-pass", "right-pass", "guessed-key"):
        assert secret_value not in log
        assert secret_value not in worker.get("/api/streams").decode()
        assert secret_value not in worker.get("/metrics").decode()


def test_camera_restart_continues_the_playlist_with_a_discontinuity(start_worker) -> None:
    worker = start_worker([rtmp_stream("gate"), secret("gate-key", streamKey="gate-k3y")])
    url = worker.rtmp_url("gate", "gate-k3y")
    with RtmpPusher(url, clip=True) as camera:
        worker.wait_for("gate", phase="Live")
        worker.wait_segments("gate", 2)
        before = worker.playlist("gate")
        camera.kill()
        worker.wait_for("gate", phase="Reconnecting", timeout=15)
        camera.start()
        worker.wait_for("gate", phase="Live")
        worker.wait_segments("gate", 2)
        after = worker.playlist("gate")
    assert after.segments[-1].sequence > before.segments[-1].sequence
    sequences = [s.sequence for s in after.segments]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert after.discontinuity_positions, "no EXT-X-DISCONTINUITY after the camera came back"
    assert worker.stream("gate")["reconnects"] >= 1


def test_stalled_camera_is_detected_by_the_watchdog(start_worker) -> None:
    worker = start_worker(
        [
            rtmp_stream("porch", stallTimeoutSeconds=3),
            secret("porch-key", streamKey="porch-k3y"),
        ]
    )
    with RtmpPusher(worker.rtmp_url("porch", "porch-k3y"), clip=True) as camera:
        worker.wait_for("porch", phase="Live")
        camera.pause()  # the TCP connection stays open, nothing flows
        started = time.monotonic()
        stalled = worker.wait_for("porch", phase="Reconnecting", timeout=15)
        detected_after = time.monotonic() - started
        camera.resume()
    assert stalled["reason"] == "Stalled"
    assert 2.5 <= detected_after <= 8, detected_after
    with RtmpPusher(worker.rtmp_url("porch", "porch-k3y"), clip=True):
        worker.wait_for("porch", phase="Live", timeout=30)


def test_a_crashed_engine_process_restarts_only_its_own_streams(start_worker) -> None:
    from camstream.spec import StreamKey
    from camstream_worker.pool.sharded import shard_of

    names = [f"cam{i}" for i in range(6)]
    manifests = []
    for name in names:
        manifests += [rtmp_stream(name), secret(f"{name}-key", streamKey=f"{name}-k3y")]
    worker = start_worker(manifests, processes=2)
    shard = {name: shard_of(StreamKey("default", name), 2) for name in names}
    assert set(shard.values()) == {0, 1}, "the test needs streams on both engine processes"
    urls = [worker.rtmp_url(name, f"{name}-k3y") for name in names]
    with contextlib.ExitStack() as stack:
        for url in urls:
            stack.enter_context(RtmpPusher(url, clip=True))
        for name in names:
            worker.wait_for(name, phase="Live")
        started = re.search(r"engine process 0 started \(pid (\d+)\)", worker.log())
        assert started, worker.log()
        victim = psutil.Process(int(started.group(1)))
        assert victim.ppid() == worker.pid
        victim.send_signal(signal.SIGKILL)
        # The pushers of the dead engine's streams lose their connection; a camera
        # reconnects by itself, here we restart them as a camera would.
        for name, url in zip(names, urls, strict=True):
            if shard[name] == 0:
                stack.enter_context(RtmpPusher(url, clip=True, startup_check=0))
        for name in names:
            worker.wait_for(name, phase="Live", timeout=45)
        for name in names:
            if shard[name] == 1:
                assert worker.stream(name)["reconnects"] == 0, name
    assert "died" in worker.log()


def test_hung_cameras_that_never_send_a_stream_are_retried(start_worker) -> None:
    """A camera that takes the TCP connection and then says nothing (RTSP, HTTP)
    must not leave its stream Connecting forever."""
    from tests.harness.cameras import BlackHoleServer

    hole = BlackHoleServer()
    hole.start()
    try:
        worker = start_worker(
            [
                camera_stream(
                    "mute-rtsp",
                    {
                        "protocol": "rtsp",
                        "url": f"rtsp://127.0.0.1:{hole.port}/cam",
                        "stallTimeoutSeconds": 3,
                    },
                ),
                camera_stream(
                    "mute-http",
                    {
                        "protocol": "http",
                        "url": f"http://127.0.0.1:{hole.port}/cam.ts",
                        "stallTimeoutSeconds": 3,
                    },
                ),
            ]
        )
        started = time.monotonic()
        for name in ("mute-rtsp", "mute-http"):
            status = worker.wait_for(name, phase="Reconnecting", timeout=20)
            assert status["reason"] in ("SourceUnreachable", "Stalled", "SourceEnded"), status
        assert time.monotonic() - started < 15
        assert hole.accepted >= 2
    finally:
        hole.stop()
