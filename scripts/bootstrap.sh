#!/usr/bin/env bash
# Installs what camstream needs on this machine, idempotently, then exits.
#   scripts/bootstrap.sh run    the demo's needs: Python env, FFmpeg, GStreamer RTSP server, hls.js
#   scripts/bootstrap.sh test   the above plus the test bed: Chromium, Lua, helm and the
#                               Kubernetes control plane (built once from Go modules, cached)
# Called by `make demo` and `make test`; safe to run again (each step checks first).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
log() { printf '[bootstrap] %s\n' "$*" >&2; }
cache="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
# Go is preinstalled under /usr/local/go on these machines, not always on PATH.
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

# 1. Debian packages: media tools for both modes (and Chromium, fonts, npm); for the
#    tests also Lua (the Argo CD health check) and libfaketime (the churn suite runs
#    pods whose wall clock is seconds off: tests/cluster/faketime.py).
scripts/install-media-deps.sh
test_apt_packages=(lua5.4 libfaketime)
if [ "$mode" = test ]; then
    missing=()
    for pkg in "${test_apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    # Check that each works, so a broken install fails here and not in a test.
    command -v lua5.4 >/dev/null || { log "lua5.4 not found"; exit 1; }
    faketime_lib="$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -n1 || true)"
    shifted="$(LD_PRELOAD="$faketime_lib" FAKETIME=+3600s date +%s 2>/dev/null || echo 0)"
    if [ -z "$faketime_lib" ] || [ $((shifted - $(date +%s))) -lt 3590 ]; then
        log "libfaketime does not shift the clock (library: ${faketime_lib:-none})"
        exit 1
    fi
fi

# 2. The Python environment (re-installed when setup.cfg changes).
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=".venv/.camstream-$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    log "pip install -e .[test]"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    rm -f .venv/.camstream-*
    touch "$stamp"
fi

# 3. hls.js for the worker's player pages, from the npm registry (served locally, no CDN).
[ -s worker/camstream_worker/static/hls.min.js ] || scripts/fetch-hlsjs.sh

if [ "$mode" = test ]; then
    # 4. helm, promtool and the Kubernetes control plane, built from their Go
    #    modules once and cached (about 25 minutes on a new 2-core machine).
    scripts/install-helm.sh >/dev/null
    scripts/install-promtool.sh >/dev/null
    bin_dir="$(scripts/build-controlplane.sh)"
    # kubectl comes with the machine image; where it does not, build it from
    # the same Kubernetes module as the control plane (about 30 s once).
    if ! command -v kubectl >/dev/null && [ ! -x "$cache/bin/kubectl" ]; then
        log "building kubectl from k8s.io/kubernetes/cmd/kubectl"
        (cd "$bin_dir/../module" && GOFLAGS=-mod=mod CGO_ENABLED=0 \
            go build -trimpath -ldflags "-s -w" -o "$cache/bin/kubectl" k8s.io/kubernetes/cmd/kubectl)
    fi
fi
log "ready ($mode)"
