#!/usr/bin/env bash
# Install what the real-media tests (tests/media, tests/harness) need, and check it.
#
# Who runs this: .ci/run before the tests, and a developer once on a fresh
# Debian 12 machine. Idempotent: packages already present are not touched,
# hls.js is fetched only when missing, so a second run is quick and offline.
#
#   apt:  ffmpeg/ffprobe (cameras, HLS checks), GStreamer's RTSP server with
#         the GObject bindings for /usr/bin/python3 (tests/harness/rtsp_camera.py),
#         x264/x265/AAC encoders (plugins ugly/bad/libav), Chromium (player),
#         a font for the camera's clock overlay, npm when node is missing.
#   npm:  hls.js@1 from the npm registry (never a CDN), through
#         scripts/fetch-hlsjs.sh when it exists (the worker serves that copy
#         and the harness player uses the same file), else into .cache/npm.
#
# Usage: scripts/install-media-deps.sh [--check]   (--check installs nothing)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

apt_packages=(
    ffmpeg
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly
    gstreamer1.0-plugins-bad
    gstreamer1.0-libav
    gstreamer1.0-x
    chromium
    fonts-dejavu-core
)
# Node may come from elsewhere (e.g. NodeSource); only ask Debian when absent.
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)

missing=()
for pkg in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$check_only" = 1 ]; then
        echo "install-media-deps: missing apt packages: ${missing[*]}" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "install-media-deps: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# hls.js from the npm registry.
cache="${CAMSTREAM_CACHE:-$root/.cache}"
worker_copy="$root/worker/camstream_worker/static/hls.min.js"
harness_copy="$cache/npm/node_modules/hls.js/dist/hls.min.js"
if [ ! -s "$worker_copy" ] && [ ! -s "$harness_copy" ]; then
    if [ "$check_only" = 1 ]; then
        echo "install-media-deps: hls.js missing" >&2
        exit 1
    fi
    if [ -x "$root/scripts/fetch-hlsjs.sh" ] && [ -d "$(dirname "$worker_copy")" ]; then
        "$root/scripts/fetch-hlsjs.sh"
    else
        mkdir -p "$cache/npm"
        npm install --silent --no-audit --no-fund --no-save --no-package-lock \
            --prefix "$cache/npm" "hls.js@1"
    fi
fi

# Check that each part really works, so a broken install fails here, not in a test.
fail=0
for tool in ffmpeg ffprobe /usr/bin/chromium; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-media-deps: $tool not found" >&2; fail=1; }
done
/usr/bin/python3 - <<'EOF' || fail=1
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
need = ["videotestsrc", "audiotestsrc", "timeoverlay", "x264enc", "x265enc", "avenc_aac",
        "h264parse", "h265parse", "aacparse", "rtph264pay", "rtph265pay", "rtpmp4gpay",
        "videoconvert", "jpegenc", "rtpjpegpay"]
missing = [n for n in need if Gst.ElementFactory.find(n) is None]
if missing:
    raise SystemExit(f"install-media-deps: GStreamer elements missing: {missing}")
EOF
# (No pipe into grep -q: with pipefail, ffmpeg's SIGPIPE would fail the test.)
encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null || true)"
if ! grep -q libx264 <<<"$encoders"; then
    echo "install-media-deps: ffmpeg has no libx264" >&2
    fail=1
fi
[ -s "$worker_copy" ] || [ -s "$harness_copy" ] || { echo "install-media-deps: hls.js missing" >&2; fail=1; }
[ "$fail" = 0 ] && echo "install-media-deps: ok"
exit "$fail"
