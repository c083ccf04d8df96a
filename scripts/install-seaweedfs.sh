#!/usr/bin/env bash
# Build SeaweedFS's `weed` from its Go module into the camstream cache.
#
# Called by scripts/bootstrap.sh test; tests/harness/objectstore.py looks for
# weed in the same place and starts it (master, volume, filer and S3 gateway
# in one process, on loopback, data in a temporary folder) as the real
# S3-compatible object store the recording tests write to. Only package
# registries are reachable here, so it is compiled from the Go module proxy
# once and cached; a second run with the binary present does nothing.
#
# The proxy serves SeaweedFS only as pseudo-versions (its release tags are not
# Go module versions); the one pinned here was `go list -m
# github.com/seaweedfs/seaweedfs@latest` on 2026-12-04.
#
# Usage: scripts/install-seaweedfs.sh      prints the path of weed
# Env:   CAMSTREAM_CACHE       cache root (default $HOME/.cache/camstream)
#        SEAWEEDFS_VERSION     module version of github.com/seaweedfs/seaweedfs
set -euo pipefail

SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
BIN_DIR="$CACHE/bin"
WEED="$BIN_DIR/weed"
STAMP="$BIN_DIR/.weed-$SEAWEEDFS_VERSION"

if [[ -x "$WEED" && -f "$STAMP" ]]; then
    echo "$WEED"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [[ -x "$candidate" ]]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
    done
fi
command -v go >/dev/null 2>&1 || { echo "install-seaweedfs: Go toolchain not found" >&2; exit 1; }

mkdir -p "$BIN_DIR"
echo "install-seaweedfs: building weed ${SEAWEEDFS_VERSION} from the Go module proxy (several minutes once)" >&2
# `go install module@version` refuses modules whose go.mod has replace
# directives (SeaweedFS's has one), so the module is downloaded and built in
# place, as its own main module: its go.mod and go.sum pin every dependency.
# -p 2: the machines have two cores. CGO off: a static binary, no C toolchain.
dir="$(go mod download -json "github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
(cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -p 2 -trimpath -ldflags "-s -w" \
    -o "$WEED.tmp" ./weed) >&2
mv "$WEED.tmp" "$WEED"
rm -f "$BIN_DIR"/.weed-*
touch "$STAMP"
"$WEED" version >&2 || true
echo "$WEED"
