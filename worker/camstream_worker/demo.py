"""`camstream demo`: a standalone worker with test cameras going through the real ingest paths.

Who calls this: the CLI (`make demo` on a fresh machine). It starts the
worker, then FFmpeg processes that push RTMP test patterns with the right
stream keys (one with a wrong key, to show it is refused while the rest play),
a synthetic in-process camera, and, where GStreamer's RTSP server is
installed, an RTSP camera the worker pulls from. It prints the URL of the page
that plays them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from camstream.spec import SpecError, StreamKey, StreamSpec, parse_stream
from camstream_worker.standalone import Manifests, start_standalone, wait_for_signal

log = logging.getLogger(__name__)

# The test bed's RTSP camera, present in a source checkout (the demo's home).
RTSP_CAMERA_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "harness" / "rtsp_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's Python bindings belong to Debian's Python


def demo_manifests(cameras: int, rtsp_url: str | None) -> tuple[Manifests, dict[str, str]]:
    """CameraStreams and Secrets for the demo; returns them and the stream keys."""
    streams: dict[StreamKey, StreamSpec] = {}
    secret_docs: list[Mapping[str, Any]] = []
    keys: dict[str, str] = {}

    def add(body: dict) -> None:
        try:
            spec = parse_stream(body)
        except SpecError as exc:  # the demo's own manifests: a bug if this happens
            raise RuntimeError(str(exc)) from exc
        streams[spec.key] = spec

    for number in range(1, cameras + 1):
        name = f"rtmp-cam{number}"
        keys[name] = secrets.token_urlsafe(12)
        secret_docs.append(
            {
                "kind": "Secret",
                "metadata": {"name": f"{name}-key"},
                "stringData": {"streamKey": keys[name]},
            }
        )
        add(
            {
                "kind": "CameraStream",
                "metadata": {"name": name},
                "spec": {
                    "source": {"protocol": "rtmp", "streamKeySecretRef": {"name": f"{name}-key"}}
                },
            }
        )
    add(
        {
            "kind": "CameraStream",
            "metadata": {"name": "synthetic"},
            "spec": {
                "source": {"protocol": "synthetic", "synthetic": {"width": 640, "height": 360}}
            },
        }
    )
    if rtsp_url:
        add(
            {
                "kind": "CameraStream",
                "metadata": {"name": "rtsp-cam"},
                "spec": {"source": {"protocol": "rtsp", "url": rtsp_url}},
            }
        )
    return Manifests(streams, secret_docs, []), keys


async def run_demo(
    *,
    cameras: int,
    seconds: float,
    hls_dir: Path,
    host: str,
    http_port: int,
    rtmp_port: int,
    processes: int = 1,
) -> int:
    if shutil.which("ffmpeg") is None:
        log.error("the demo's RTMP cameras need the ffmpeg command (apt-get install ffmpeg)")
        return 2
    children: list[subprocess.Popen[bytes]] = []
    try:
        rtsp_url = await _start_rtsp_camera(children)
        manifests, keys = demo_manifests(cameras, rtsp_url)
        worker = await start_standalone(
            manifests,
            hls_dir=hls_dir,
            host=host,
            http_port=http_port,
            rtmp_port=rtmp_port,
            processes=processes,
        )
        base = f"rtmp://{host}:{worker.rtmp.port}/default"
        for name, key in keys.items():
            children.append(_push(f"{base}/{name}/{key}"))
        children.append(_push(f"{base}/rtmp-cam1/wrong-key", quiet=True))
        print(
            f"\ncamstream demo: open http://{host}:{worker.http_port}/ to watch "
            f"{len(manifests.streams)} streams (Ctrl-C to stop)\n",
            flush=True,
        )
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_signal(), seconds)
        else:
            await wait_for_signal()
        await worker.close()
        return 0
    finally:
        for process in children:
            process.terminate()
        for process in children:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def _push(url: str, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """An FFmpeg test camera publishing 640x360 H.264 + AAC at 1 Mbit/s."""
    command = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "quiet" if quiet else "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-g",
        "50",
        "-b:v",
        "1M",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "flv",
        url,
    ]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


async def _start_rtsp_camera(children: list[subprocess.Popen[bytes]]) -> str | None:
    """GStreamer's RTSP server on a free port, or None where it is not installed."""
    if not (Path(SYSTEM_PYTHON).exists() and RTSP_CAMERA_SCRIPT.exists()):
        return None
    process = subprocess.Popen(
        [
            SYSTEM_PYTHON,
            str(RTSP_CAMERA_SCRIPT),
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--mount",
            "/cam1=h264+aac",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    children.append(process)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 10)
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY"):
        log.warning("no RTSP camera in the demo (GStreamer's RTSP server did not start)")
        return None
    port = int(line.split()[1])
    return f"rtsp://127.0.0.1:{port}/cam1"


if __name__ == "__main__":
    sys.exit("run it as: camstream demo")
