#!/usr/bin/env bash
# Build Prometheus's promtool from its Go module into the camstream cache.
#
# Called by tests/deploy/test_alerts.py (when promtool is missing) and, ideally,
# by scripts/bootstrap.sh test. promtool checks monitoring/alerts.yaml and runs
# the alert unit tests in tests/deploy/alerts_test.yaml. Only package
# registries are reachable here, so it is compiled from the Go module proxy
# once and cached; a second run with the binary present does nothing.
#
# Usage: scripts/install-promtool.sh      prints the path of promtool
# Env:   CAMSTREAM_CACHE      cache root (default $HOME/.cache/camstream)
#        PROMTOOL_VERSION     module version of github.com/prometheus/prometheus
#                             (its Go tags: v0.316.0 is Prometheus 3.x)
set -euo pipefail

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
BIN_DIR="$CACHE/bin"
PROMTOOL="$BIN_DIR/promtool"
STAMP="$BIN_DIR/.promtool-$PROMTOOL_VERSION"

if [[ -x "$PROMTOOL" && -f "$STAMP" ]]; then
    echo "$PROMTOOL"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [[ -x "$candidate" ]]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
    done
fi
command -v go >/dev/null 2>&1 || { echo "install-promtool: Go toolchain not found" >&2; exit 1; }

mkdir -p "$BIN_DIR"
echo "install-promtool: building promtool ${PROMTOOL_VERSION} from the Go module proxy (several minutes once)" >&2
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -p 2 -trimpath -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@${PROMTOOL_VERSION}" >&2
rm -f "$BIN_DIR"/.promtool-*
touch "$STAMP"
"$PROMTOOL" --version >&2 || true
echo "$PROMTOOL"
