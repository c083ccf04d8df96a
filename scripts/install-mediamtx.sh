#!/usr/bin/env bash
# Build MediaMTX from its Go module into the camstream cache.
#
# Called by `make bench` (not by `make test`: only the worker benchmark needs
# it); bench/worker_bench.py looks for the binary in the same place and runs it
# as the peer baseline (RTMP in, HLS out), beside camstream and FFmpeg, with the
# same senders. Only package registries are reachable here, so it is compiled
# from the Go module proxy once and cached (about 1.5 minutes on 2 cores); a
# second run with the binary present at the pinned version does nothing.
#
# Usage: scripts/install-mediamtx.sh       prints the path of mediamtx
# Env:   CAMSTREAM_CACHE       cache root (default $HOME/.cache/camstream)
#        MEDIAMTX_VERSION      module version of github.com/bluenviron/mediamtx
set -euo pipefail

MEDIAMTX_VERSION="${MEDIAMTX_VERSION:-v1.20.1}"
CACHE="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
BIN_DIR="$CACHE/bin"
MEDIAMTX="$BIN_DIR/mediamtx"
STAMP="$BIN_DIR/.mediamtx-$MEDIAMTX_VERSION"

if [[ -x "$MEDIAMTX" && -f "$STAMP" ]]; then
    echo "$MEDIAMTX"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [[ -x "$candidate" ]]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
    done
fi
command -v go >/dev/null 2>&1 || { echo "install-mediamtx: Go toolchain not found" >&2; exit 1; }

mkdir -p "$BIN_DIR"
echo "install-mediamtx: building mediamtx ${MEDIAMTX_VERSION} from the Go module proxy (a minute or two once)" >&2
# Built in place as its own main module, like SeaweedFS: its go.mod and go.sum
# pin every dependency. MediaMTX's release builds first run `go generate`,
# which downloads two files the proxy's copy lacks and `go:embed` needs:
# internal/core/VERSION (written here as `go generate` would, so `mediamtx
# --version` names it) and hls.js for its player page (camstream's own copy
# from scripts/fetch-hlsjs.sh when present, else an empty file: the benchmark
# reads only playlists and segments, never MediaMTX's page).
# -p 2: the machines have two cores. CGO off: a static binary.
dir="$(go mod download -json "github.com/bluenviron/mediamtx@${MEDIAMTX_VERSION}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
hlsjs="$(cd "$(dirname "$0")/.." && pwd)/worker/camstream_worker/static/hls.min.js"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
(
    cd "$work"
    printf '%s' "$MEDIAMTX_VERSION" >internal/core/VERSION
    if [[ -s "$hlsjs" ]]; then cp "$hlsjs" internal/servers/hls/hls.min.js; else : >internal/servers/hls/hls.min.js; fi
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p 2 -trimpath -ldflags "-s -w" -o "$MEDIAMTX.tmp" .
) >&2
mv "$MEDIAMTX.tmp" "$MEDIAMTX"
rm -f "$BIN_DIR"/.mediamtx-*
touch "$STAMP"
"$MEDIAMTX" --version >&2 || true
echo "$MEDIAMTX"
