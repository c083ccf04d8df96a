"""SRT end to end: Debian's FFmpeg as the camera, a real worker, HLS checked by ffprobe.

Push (the camera calls the worker's one SRT port, routed by stream ID, with
the passphrase of the stream's Secret), pull (the worker calls an FFmpeg in
listener mode), a wrong passphrase, loss on the path, a publisher killed and
back, and garbage on the port. Under the shared lock: these start processes.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import urllib.request

import pytest

from tests.harness.hlscheck import check_continuity, probe_segment
from tests.harness.srt import LossyRelay, SrtCamera, udp_free_port
from tests.media.worker_process import WorkerProcess, camera_stream, secret

pytestmark = pytest.mark.media

PASSPHRASE = "s3cret-passphrase-door"


def srt_push(name: str, latency_ms: int = 200) -> list[dict[str, object]]:
    source = {
        "protocol": "srt",
        "srt": {"passphraseSecretRef": {"name": f"{name}-srt"}, "latencyMs": latency_ms},
    }
    return [
        camera_stream(name, source, hls={"segmentSeconds": 1}),
        secret(f"{name}-srt", passphrase=PASSPHRASE + name),
    ]


def start(
    start_worker, manifests: list[dict[str, object]], processes: int = 2
) -> tuple[WorkerProcess, int]:
    port = udp_free_port()
    return start_worker(manifests, processes, extra_args=("--srt-port", str(port))), port


def assert_plays(worker: WorkerProcess, name: str, count: int = 4) -> None:
    """The last `count` segments decode as H.264 + AAC and follow each other without a gap."""
    playlist = worker.playlist(name)
    segments = playlist.segments[-count:]
    assert len(segments) == count, playlist
    probes = [probe_segment(str(worker.segment_path(name, s.uri))) for s in segments]
    for probe in probes:
        assert probe.codecs[:2] == ("h264", "aac"), probe.codecs
    assert check_continuity(segments, probes) == []


def metric(worker: WorkerProcess, line_start: str) -> float:
    for line in worker.get("/metrics").decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


def wait_metric(worker: WorkerProcess, line_start: str, at_least: float) -> float:
    """The listener counts a failed handshake when it sees it (every 0.25 s): wait for it."""
    deadline = time.monotonic() + 5
    while (value := metric(worker, line_start)) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


@pytest.mark.parametrize("processes", [1, 2])
def test_publish_with_passphrase_plays_as_hls(start_worker, processes: int) -> None:
    """Two engine processes: the front relays to the stream's process; one: to its engine."""
    worker, port = start(start_worker, srt_push("door"), processes)
    assert worker.stream("door")["phase"] == "Connecting"  # waiting for its camera
    stream_id = "#!::u=cam7,r=default/door,m=publish"  # keys in any order, u ignored
    with SrtCamera(port, stream_id=stream_id, passphrase=PASSPHRASE + "door"):
        worker.wait_for("door", phase="Live")
        status = worker.wait_segments("door", 5)
        assert_plays(worker, "door")
    assert status["codecs"] == {"video": "h264", "audio": "aac"}
    assert metric(worker, "camstream_srt_received_bytes_total") > 100_000
    assert PASSPHRASE not in worker.log()


def test_wrong_passphrase_is_refused_with_a_clear_reason(start_worker) -> None:
    worker, port = start(start_worker, srt_push("gate"))
    wrong = "not-the-passphrase-1"
    tail = SrtCamera(port, stream_id="default/gate", passphrase=wrong).run_once()
    assert "Connection to srt" in tail or "Input/output error" in tail, tail  # refused
    status = worker.wait_for("gate", phase="Connecting", reason="WrongPassphrase", timeout=10)
    assert "wrong or missing passphrase" in status["message"]
    assert status["segments"] == 0
    # No passphrase at all is refused the same way (SRT's enforced encryption).
    SrtCamera(port, stream_id="default/gate").run_once()
    assert wait_metric(worker, 'camstream_srt_rejected_total{reason="unauthorized"}', 2) >= 2
    log = worker.log()
    assert wrong not in log and PASSPHRASE not in log
    assert wrong not in str(worker.streams()) and PASSPHRASE not in str(worker.streams())
    # The right passphrase still gets in afterwards.
    with SrtCamera(port, stream_id="default/gate", passphrase=PASSPHRASE + "gate"):
        worker.wait_for("gate", phase="Live")


def test_unknown_and_malformed_stream_ids_are_refused(start_worker) -> None:
    worker, port = start(start_worker, srt_push("yard"))
    for stream_id in ("default/nosuch", "#!::r=default/yard,m=request", "yard"):
        SrtCamera(port, stream_id=stream_id, passphrase=PASSPHRASE + "yard").run_once()
    assert wait_metric(worker, 'camstream_srt_rejected_total{reason="stream_id"}', 3) == 3
    assert worker.stream("yard")["segments"] == 0


def test_loss_on_the_path_is_recovered_by_srt(start_worker) -> None:
    worker, port = start(start_worker, srt_push("lossy", latency_ms=500))
    with LossyRelay(port, loss=0.05) as relay:
        with SrtCamera(
            relay.port, stream_id="default/lossy", passphrase=PASSPHRASE + "lossy", latency_ms=500
        ):
            worker.wait_for("lossy", phase="Live", timeout=40)
            worker.wait_segments("lossy", 8, timeout=40)
            playlist = worker.playlist("lossy")
            assert playlist.discontinuity_positions == ()  # one session: no reconnect
            assert worker.stream("lossy")["reconnects"] == 0
            assert_plays(worker, "lossy", count=6)
        assert relay.dropped > 50, (relay.dropped, relay.forwarded)
        assert relay.dropped / (relay.dropped + relay.forwarded) > 0.03


def test_a_publisher_killed_and_back(start_worker) -> None:
    worker, port = start(start_worker, srt_push("dock"))
    camera = SrtCamera(port, stream_id="default/dock", passphrase=PASSPHRASE + "dock")
    with camera:
        worker.wait_for("dock", phase="Live")
        worker.wait_segments("dock", 2)
        camera.kill()  # SIGKILL: no goodbye; SRT's peer idle timeout ends it
        worker.wait_for("dock", phase="Reconnecting", timeout=20)
        before = worker.stream("dock")["segments"]
        camera.start()
        worker.wait_for("dock", phase="Live", timeout=20)
        worker.wait_segments("dock", 3)
        assert worker.stream("dock")["segments"] > before
        assert len(worker.playlist("dock").discontinuity_positions) >= 1
        assert_plays(worker, "dock", count=2)


def test_pull_from_an_encoder_in_listener_mode(start_worker) -> None:
    encoder_port = udp_free_port()
    source = {
        "protocol": "srt",
        "url": f"srt://127.0.0.1:{encoder_port}",
        "srt": {"passphraseSecretRef": {"name": "enc-srt"}, "latencyMs": 200},
    }
    with SrtCamera(encoder_port, listener=True, passphrase=PASSPHRASE):
        worker, _ = start(
            start_worker,
            [
                camera_stream("encoder", source, hls={"segmentSeconds": 1}),
                secret("enc-srt", passphrase=PASSPHRASE),
            ],
        )
        worker.wait_for("encoder", phase="Live", timeout=30)
        worker.wait_segments("encoder", 4)
        assert_plays(worker, "encoder")
    assert PASSPHRASE not in worker.log()


def test_garbage_datagrams_do_not_disturb_a_camera(start_worker) -> None:
    worker, port = start(start_worker, srt_push("calm"))
    with SrtCamera(port, stream_id="default/calm", passphrase=PASSPHRASE + "calm"):
        worker.wait_for("calm", phase="Live")
        worker.wait_segments("calm", 2)
        stop = threading.Event()
        sent = [0]

        def spray() -> None:
            noise = random.Random(8)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                while not stop.is_set():
                    size = noise.choice([1, 16, 64, 1316, 1500])
                    # Half look like SRT control packets (high bit set): handshakes, ACKs, junk.
                    head = bytes([0x80 | noise.randrange(128)]) if noise.random() < 0.5 else b""
                    sock.sendto(head + os.urandom(size), ("127.0.0.1", port))
                    sent[0] += 1
                    if sent[0] % 200 == 0:
                        time.sleep(0.01)

        thread = threading.Thread(target=spray, daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            worker.wait_segments("calm", 6, timeout=12)  # 1 s segments keep their cadence
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
        assert sent[0] > 5000
        assert elapsed < 10, elapsed
        status = worker.stream("calm")
        assert status["phase"] == "Live" and status["reconnects"] == 0
        assert_plays(worker, "calm")
    with urllib.request.urlopen(worker.base_url + "/healthz", timeout=5) as answer:
        assert answer.status == 200
