#!/usr/bin/env bash
# Install what the real-media tests (tests/media, tests/harness) need, and check it.
#
# Who runs this: .ci/run before the tests, and a developer once on a fresh
# Debian 12 machine. Idempotent: packages already present are not touched,
# hls.js is fetched only when missing, so a second run is quick and offline.
#
#   apt:  the packages of scripts/deps/apt-media.txt (ffmpeg/ffprobe, GStreamer's
#         RTSP server with the GObject bindings for /usr/bin/python3, the
#         encoders and the clock overlay, Chromium, a font), npm when node is
#         missing; then a check that every element of
#         scripts/deps/gstreamer-elements.txt loads.
#   npm:  hls.js@1 from the npm registry (never a CDN), through
#         scripts/fetch-hlsjs.sh when it exists (the worker serves that copy
#         and the harness player uses the same file), else into .cache/npm.
#
# Usage: scripts/install-media-deps.sh [--check]   (--check installs nothing)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# The package list is data (scripts/deps/apt-media.txt), read here and by tests/bootstrap.
apt_args=("$root/scripts/deps/apt-media.txt")
# Node may come from elsewhere (e.g. NodeSource); only ask Debian when absent.
command -v npm >/dev/null 2>&1 || apt_args+=(npm)
if [ "$check_only" = 1 ]; then
    "$root/scripts/apt-install.sh" --check "${apt_args[@]}"
else
    "$root/scripts/apt-install.sh" "${apt_args[@]}"
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
# The elements the harness needs: scripts/deps/gstreamer-elements.txt (also read by tests/bootstrap).
/usr/bin/python3 - "$root/scripts/deps/gstreamer-elements.txt" <<'EOF' || fail=1
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
with open(sys.argv[1]) as listing:
    need = [line.split("#")[0].strip() for line in listing]
missing = [n for n in need if n and Gst.ElementFactory.find(n) is None]
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
