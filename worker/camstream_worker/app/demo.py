"""`camstream demo`: a standalone worker with test cameras going through the real ingest paths.

Who calls this: the CLI (app/cli.py; `make demo` on a fresh machine). It
starts the worker, then FFmpeg processes that push RTMP test patterns with the
right stream keys (one with a wrong key, to show it is refused while the rest
play), a synthetic in-process camera, and, where GStreamer's RTSP server is
installed, an RTSP camera the worker pulls from (the cameras are testcams/,
shipped with the worker). It prints the URL of the page that plays them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from camstream.spec import SpecError, StreamKey, StreamSpec, parse_stream
from camstream_worker.app.config import DemoConfig
from camstream_worker.app.standalone import Manifests, start_standalone, wait_for_signal
from camstream_worker.testcams import launch

log = logging.getLogger(__name__)


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


async def run_demo(demo: DemoConfig) -> int:
    if shutil.which("ffmpeg") is None:
        log.error("the demo's RTMP cameras need the ffmpeg command (apt-get install ffmpeg)")
        return 2
    children: list[subprocess.Popen[bytes]] = []
    try:
        rtsp_url = await _start_rtsp_camera(children)
        manifests, keys = demo_manifests(demo.cameras, rtsp_url)
        worker = await start_standalone(manifests, demo.serving)
        host = demo.serving.host
        base = f"rtmp://{host}:{worker.rtmp.port}/default"
        for name, key in keys.items():
            children.append(_push(f"{base}/{name}/{key}"))
        children.append(_push(f"{base}/rtmp-cam1/wrong-key", quiet=True))
        print(
            f"\ncamstream demo: open http://{host}:{worker.http_port}/ to watch "
            f"{len(manifests.streams)} streams (Ctrl-C to stop)\n",
            flush=True,
        )
        if demo.seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_signal(), demo.seconds)
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
    """An FFmpeg test camera publishing to `url`."""
    return subprocess.Popen(launch.rtmp_camera(url, quiet=quiet), stdin=subprocess.DEVNULL)


async def _start_rtsp_camera(children: list[subprocess.Popen[bytes]]) -> str | None:
    """GStreamer's RTSP server on a free port, or None where it is not installed."""
    if not launch.rtsp_camera_available():
        return None
    process = subprocess.Popen(
        launch.rtsp_camera({"/cam1": "h264+aac"}),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    children.append(process)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 10)
    except TimeoutError:
        line = b""
    port = launch.ready_port(line.decode(errors="replace"))
    if port is None:
        log.warning("no RTSP camera in the demo (GStreamer's RTSP server did not start)")
        return None
    return f"rtsp://127.0.0.1:{port}/cam1"
