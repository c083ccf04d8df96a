"""Command lines of the test cameras: an RTSP camera (GStreamer) and an RTMP one (FFmpeg).

Who calls this: the demo (app/demo.py), and the test harness
(tests/harness/cameras.py), which runs the same cameras under its own process
control. Pure: argument lists in, nothing started here.

The RTSP camera is rtsp_camera.py beside this module, run by Debian's
/usr/bin/python3 because only that interpreter has GStreamer's GObject
bindings; it prints ``READY <port>`` once it serves (see `ready_port`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter with GStreamer's gi bindings
RTSP_CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")


def rtsp_camera_available() -> bool:
    return Path(SYSTEM_PYTHON).exists() and RTSP_CAMERA_SCRIPT.exists()


def rtsp_camera(
    mounts: Mapping[str, str],
    *,
    port: int = 0,
    bind: str = "127.0.0.1",
    size: str = "640x360",
    fps: int = 25,
    bitrate_kbps: int = 1000,
    gop_seconds: float = 2.0,
) -> list[str]:
    """GStreamer's RTSP server with one mount per entry (path -> kind, e.g. "/cam1": "h264+aac").

    Port 0 lets the kernel pick a free port (no race between picking and
    binding); the camera prints the one it got. Credentials are the caller's
    to add (``--user``, ``--password-env``, ``--auth``): a password never goes
    on a command line.
    """
    argv = [SYSTEM_PYTHON, str(RTSP_CAMERA_SCRIPT), "--port", str(port), "--bind", bind]
    argv += ["--size", size, "--fps", str(fps)]
    argv += ["--bitrate", str(bitrate_kbps), "--gop-seconds", str(gop_seconds)]
    for path, kind in mounts.items():
        argv += ["--mount", f"{path}={kind}"]
    return argv


def ready_port(line: str) -> int | None:
    """The port from the RTSP camera's ``READY <port>`` line; None for any other line."""
    if not line.startswith("READY "):
        return None
    return int(line.split()[1])


def rtmp_camera(url: str, *, quiet: bool = False) -> list[str]:
    """FFmpeg publishing a live 640x360 H.264 + AAC test pattern at 1 Mbit/s to `url`."""
    return [
        *("ffmpeg", "-nostdin", "-loglevel", "quiet" if quiet else "error", "-re"),
        *("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "50"),
        *("-b:v", "1M", "-c:a", "aac", "-b:a", "64k"),
        *("-f", "flv", url),
    ]
