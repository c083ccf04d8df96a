#!/usr/bin/python3
"""A real RTSP camera: GStreamer's gst-rtsp-server serving live test streams.

Run by ``camstream demo`` and by the test harness (``tests/harness/cameras.py``,
class ``RtspCamera``), both through ``launch.py`` beside it, with Debian's own
``/usr/bin/python3``, because only that interpreter has the GObject bindings
(``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``); the project's virtualenv
does not. It therefore imports nothing from the package and must stay
runnable as a plain script.

Usage::

    /usr/bin/python3 worker/camstream_worker/testcams/rtsp_camera.py --port 0 --bind 127.0.0.1 \\
        --mount /cam1=h264+aac --mount /h265=h265 --mount /video-only=h264 \\
        [--user U --password-env CAM_PASSWORD --auth digest|basic] [--size 640x360] [--fps 25]

Prints ``READY <port>`` on stdout once it is serving (``--port 0`` lets the
kernel pick a free port, so there is no race between picking and binding),
then runs until SIGTERM/SIGINT or until its parent process dies. The password
is taken from an environment variable (or ``--password``) and never printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# Kinds of mount a test can ask for. Each names the elementary streams the
# camera sends; "h265" is video-only because that is what H.265 cameras in the
# field most often are and what the worker must cope with; "mjpeg" is a real
# camera codec that HLS cannot carry (the "unsupported codec" fault).
KINDS = ("h264+aac", "h264", "h265", "h265+aac", "mjpeg")

ROLE = "camera-user"


def _video_branch(codec: str, width: int, height: int, fps: int, bitrate: int, gop: int) -> str:
    """Live test pattern encoded and payloaded as pay0.

    config-interval=-1 repeats SPS/PPS(/VPS) with every key frame so a client
    that joins mid-stream can start decoding at the next one.
    """
    src = (
        f"videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        # The clock overlay makes screenshots show that time moves.
        f'! timeoverlay halignment=right valignment=bottom font-desc="Sans 24" '
    )
    if codec == "h264":
        enc = (
            f"! x264enc tune=zerolatency speed-preset=veryfast key-int-max={gop} "
            f"bitrate={bitrate} ! h264parse "
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 "
        )
    elif codec == "mjpeg":
        # RTP/JPEG (RFC 2435) carries 4:2:0 only: pin the raw format.
        enc = (
            "! videoconvert ! video/x-raw,format=I420 "
            "! jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26 "
        )
    else:
        enc = (
            f"! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
            f"bitrate={bitrate} ! h265parse "
            f"! rtph265pay name=pay0 pt=96 config-interval=-1 "
        )
    return src + enc


def _audio_branch() -> str:
    return (
        "audiotestsrc is-live=true wave=sine freq=440 "
        "! audio/x-raw,rate=48000,channels=2 ! audioconvert "
        "! avenc_aac ! aacparse ! rtpmp4gpay name=pay1 pt=97 "
    )


def launch_line(kind: str, width: int, height: int, fps: int, bitrate: int, gop: int) -> str:
    """The gst-launch description for one mount kind."""
    codec, _, audio = kind.partition("+")
    line = _video_branch(codec, width, height, fps, bitrate, gop)
    if audio:
        line += _audio_branch()
    return f"( {line})"


def _parse_mount(text: str) -> tuple[str, str]:
    path, sep, kind = text.partition("=")
    if not sep:
        kind = "h264+aac"
    if not path.startswith("/") or kind not in KINDS:
        raise argparse.ArgumentTypeError(f"mount must be /path=KIND with KIND in {KINDS}: {text!r}")
    return path, kind


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--mount", action="append", type=_parse_mount, default=[])
    p.add_argument("--user", default=None)
    p.add_argument("--password", default=None, help="prefer --password-env")
    p.add_argument("--password-env", default=None, help="environment variable with the password")
    p.add_argument("--auth", choices=("digest", "basic"), default="digest")
    p.add_argument("--size", default="640x360")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", type=int, default=1000, help="kbit/s")
    p.add_argument("--gop-seconds", type=float, default=2.0)
    p.add_argument(
        "--no-shared",
        action="store_true",
        help="one encoder per client instead of one per mount shared by all clients",
    )
    args = p.parse_args(argv)
    if not args.bind.startswith("127."):
        p.error("--bind must be a loopback address (127.0.0.0/8)")
    if not args.mount:
        args.mount = [("/cam1", "h264+aac")]
    if args.password_env:
        args.password = os.environ.get(args.password_env)
    if (args.user is None) != (args.password is None):
        p.error("--user and a password go together")
    return args


def _auth(user: str, password: str, method: str) -> GstRtspServer.RTSPAuth:
    """Require credentials with one method.

    The C API takes a bitmask of methods, but the GObject bindings type it as
    an enum and refuse BASIC|DIGEST, so a camera offers one method at a time.
    """
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
    if method == "basic":
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    else:
        auth.add_digest(user, password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    return auth


def _permissions() -> GstRtspServer.RTSPPermissions:
    perms = GstRtspServer.RTSPPermissions()
    perms.add_permission_for_role(ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    perms.add_permission_for_role(ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    return perms


def _loopback_pool(bind: str) -> GstRtspServer.RTSPAddressPool:
    """UDP transport sockets on the loopback address too (without a pool the
    server binds its RTP/RTCP ports on every interface)."""
    pool = GstRtspServer.RTSPAddressPool()
    # Below the kernel's ephemeral range (32768+), where free_port() and
    # clients get their ports; the server moves on if a port is taken.
    pool.add_range(bind, bind, 20000, 32767, 0)
    return pool


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    gop = max(1, round(args.fps * args.gop_seconds))
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.bind)
    server.set_service(str(args.port))
    if args.user is not None:
        server.set_auth(_auth(args.user, args.password, args.auth))

    mounts = server.get_mount_points()
    for path, kind in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(kind, width, height, args.fps, args.bitrate, gop))
        # Shared: one encoder per mount however many clients read it, which
        # keeps a camera cheap on a 2-core machine.
        factory.set_shared(not args.no_shared)
        factory.set_address_pool(_loopback_pool(args.bind))
        if args.user is not None:
            factory.set_permissions(_permissions())
        mounts.add_factory(path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.bind}:{args.port}", file=sys.stderr, flush=True)
        return 2
    # Clean sessions out periodically so killed clients do not pile up.
    GLib.timeout_add_seconds(2, lambda: (server.get_session_pool().cleanup(), True)[1])

    # Exit with the test process that started us: if it dies without
    # stopping us (SIGKILL, a crashed runner) we are reparented, and an
    # orphaned camera would hold CPU on a shared machine.
    parent = os.getppid()

    def orphaned() -> bool:
        if os.getppid() != parent:
            loop.quit()
            return False
        return True

    GLib.timeout_add_seconds(1, orphaned)

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)

    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
