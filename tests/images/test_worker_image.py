"""The worker image runs a standalone worker that serves a playable stream.

The image's ENTRYPOINT is `camstream worker` (cluster mode, which needs a
Kubernetes API); the same program's standalone mode, `camstream run -f`,
needs nothing but a manifest, so it is what runs here: a synthetic camera
(PyAV encoding inside the image), HLS served on the host's loopback, a
segment fetched over HTTP and decoded by the host's ffprobe.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from tests.harness.cameras import free_port
from tests.harness.hlscheck import FFPROBE, fetch, resolve, validate, wait_for_segments

from .conftest import Image

pytestmark = [pytest.mark.images, pytest.mark.timeout(300)]

STREAM = {
    "apiVersion": "camstream.io/v1alpha1",
    "kind": "CameraStream",
    "metadata": {"name": "pattern", "namespace": "default"},
    "spec": {
        "source": {"protocol": "synthetic", "synthetic": {"width": 320, "height": 240, "fps": 25}},
        "hls": {"segmentSeconds": 1, "windowSegments": 4},
    },
}


def test_worker_entrypoint_answers_help(worker_image: Image) -> None:
    command = worker_image.command()
    assert command == ["/opt/venv/bin/camstream", "worker", "--help"]
    with worker_image.container() as box:
        result = box.run(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: camstream worker" in result.stdout


def test_standalone_worker_serves_a_synthetic_stream(worker_image: Image, tmp_path: Path) -> None:
    (program, *_) = worker_image.config()["Entrypoint"]
    (uid, *_) = worker_image.config()["User"].split(":")
    streams = tmp_path / "streams"
    streams.mkdir(mode=0o755)
    streams.chmod(0o755)  # read by the image's user inside
    (streams / "streams.yaml").write_text(yaml.safe_dump(STREAM))
    (streams / "streams.yaml").chmod(0o644)
    http_port, rtmp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "worker.log"

    with worker_image.container() as box, open(log, "wb") as out:
        argv = box.argv(
            [
                program, "run", "-f", "/streams/streams.yaml",
                "--host", "127.0.0.1", "--http-port", str(http_port),
                "--rtmp-port", str(rtmp_port), "--processes", "1",
                # The image's own HLS folder, owned by its user.
                "--hls-dir", "/var/lib/camstream/hls",
            ],
            volumes=[f"{streams}:/streams:ro"],
        )  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            playlist_url = f"{base}/streams/default/pattern/index.m3u8"
            try:
                playlist = wait_for_segments(playlist_url, count=2, timeout=60)
            except Exception:
                pytest.fail(f"no playlist from the image's worker:\n{log.read_text()[-3000:]}")
            took = time.monotonic() - started
            print(f"\nworker image: 2 segments served {took:.1f} s after start")

            # The worker process (chroot isolation: a host process) runs as the image's user.
            workers = [
                p for p in psutil.Process(proc.pid).children(recursive=True)
                if program in " ".join(p.cmdline())
            ]  # fmt: skip
            assert workers, "the worker process was not found under buildah run"
            for worker in workers:
                assert worker.uids().real == int(uid) and worker.uids().effective == int(uid)

            report = validate(playlist_url, expect_codecs=("h264", "aac"), min_segments=2)
            assert not report.problems, report.problems
            # Decode every frame of one segment, fetched over HTTP.
            segment = tmp_path / "segment.ts"
            segment.write_bytes(fetch(resolve(playlist_url, playlist.segments[-1].uri)))
            decoded = subprocess.run(
                [
                    FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0",
                    "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json",
                    str(segment),
                ],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            (video,) = json.loads(decoded.stdout)["streams"]
            assert video["codec_name"] == "h264"
            assert int(video["nb_read_frames"]) >= 20  # about 1 s at 25 fps

            # hls.js came from the image's npm stage and is served from the package.
            with urllib.request.urlopen(f"{base}/static/hls.min.js", timeout=10) as response:
                assert response.status == 200
                assert len(response.read()) > 100_000
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to buildah, which passes it on; SIGKILL to all of them if that hangs."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        proc.wait(timeout=30)


# Run by the image's own python: the binding loads the libsrt the Dockerfile
# copied into the venv (CAMSTREAM_LIBSRT), listens with a passphrase (so
# GnuTLS's AES is exercised too) and counts what one encrypted caller sends.
SRT_LISTENER = """
import os, sys, time
from camstream_worker.srt import libsrt as s
lib = s.library()
print("LIB", lib._name, os.environ.get(s.LIBRARY_VARIABLE), flush=True)
sock = s.create()
s.set_string(sock, s.SRTO_PASSPHRASE, sys.argv[1])
s.bind(sock, "127.0.0.1", 0)
s.listen(sock, 1)
print("PORT", s.bound_port(sock), flush=True)
conn, _ = s.accept(sock)
s.set_int(conn, s.SRTO_RCVTIMEO, 2000)
buffer, total, deadline = s.receive_buffer(), 0, time.monotonic() + 20
while total < 200_000 and time.monotonic() < deadline:
    got = s.receive(conn, buffer)
    if got.closed:
        break
    total += len(got.data)
print("BYTES", total, flush=True)
s.close(conn)
s.close(sock)
print("CLOSED", flush=True)
"""
SRT_PASSPHRASE = "image-srt-0123456789"


def test_worker_image_loads_its_libsrt_and_takes_an_encrypted_srt_caller(
    worker_image: Image,
) -> None:
    """A broken copy of libsrt (missing, wrong path, a dependency absent) fails here."""
    library = dict(e.split("=", 1) for e in worker_image.config()["Env"])["CAMSTREAM_LIBSRT"]
    assert library.startswith("/opt/venv/")
    with worker_image.container() as box:
        listener = subprocess.Popen(
            box.argv(["/opt/venv/bin/python", "-c", SRT_LISTENER, SRT_PASSPHRASE]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        camera = None
        try:
            assert listener.stdout is not None
            lines = [listener.stdout.readline().split() for _ in range(2)]
            assert lines[0][:3] == ["LIB", library, library], lines
            assert lines[1][0] == "PORT"
            port = int(lines[1][1])
            # Debian's ffmpeg (its own libsrt) as the camera, encrypted.
            camera = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
                 "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                 "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "mpegts",
                 f"srt://127.0.0.1:{port}?mode=caller&passphrase={SRT_PASSPHRASE}&pbkeylen=16"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = listener.communicate(timeout=60)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
            if camera is not None:
                camera.terminate()
                camera.wait(10)
    assert listener.returncode == 0, err[-3000:]
    (total,) = [int(line.split()[1]) for line in out.splitlines() if line.startswith("BYTES")]
    assert total >= 200_000, out
    assert out.splitlines()[-1] == "CLOSED"
