#!/usr/bin/env bash
# Build the helm CLI from its Go module (helm.sh/helm/v3) into a cache folder.
#
# Called by .ci/run and by developers before tests/deploy and tests/cluster run;
# tests/deploy/conftest.py looks for helm in the same place. There is no
# prebuilt helm download on these machines (only package registries are
# reachable), so it is compiled from the Go module proxy once and cached:
# a second run with the binary present at the right version does nothing.
#
# Usage: scripts/install-helm.sh            prints the path of the helm binary
# Env:   CAMSTREAM_CACHE  cache root (default $HOME/.cache/camstream)
#        HELM_VERSION     module version (default v3.19.0)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
BIN_DIR="$CACHE/bin"
HELM="$BIN_DIR/helm"

if [[ -x "$HELM" ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
    echo "$HELM"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [[ -x "$candidate" ]]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
    done
fi
command -v go >/dev/null 2>&1 || { echo "install-helm: Go toolchain not found (need go >= 1.24)" >&2; exit 1; }

mkdir -p "$BIN_DIR"
# The version is stamped the way helm's own Makefile does, so `helm version`
# reports it and the cache check above works. -p 2: the machines have two cores.
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
echo "install-helm: building helm ${HELM_VERSION} from the Go module proxy (a few minutes once)" >&2
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -p 2 -trimpath -ldflags "$LDFLAGS" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
"$HELM" version --short >&2
echo "$HELM"
