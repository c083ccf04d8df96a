#!/usr/bin/env bash
# Installs what camstream needs on this machine, idempotently, then exits.
#   scripts/bootstrap.sh run    the demo's needs: Python env, FFmpeg, GStreamer RTSP server, hls.js
#   scripts/bootstrap.sh test   the above plus the test bed: Chromium, Lua, helm, promtool,
#                               SeaweedFS (the recordings' S3 store) and the Kubernetes
#                               control plane (built once from Go modules, cached), and the
#                               two container images (buildah, cached)
# Called by `make demo` and `make test`; safe to run again (each step checks first).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
log() { printf '[bootstrap] %s\n' "$*" >&2; }
cache="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
# Go is preinstalled under /usr/local/go on these machines, not always on PATH.
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

# 1. Debian packages: media tools for both modes (and Chromium, fonts, npm); for the
#    tests, Lua, the image tools and libfaketime (scripts/deps/apt-*.txt).
scripts/install-media-deps.sh
if [ "$mode" = test ]; then
    scripts/apt-install.sh scripts/deps/apt-test.txt
    # The churn suite runs pods whose wall clock is seconds off (tests/cluster/faketime.py):
    # check that the library shifts a clock, so a broken install fails here, not in a test.
    faketime_lib="$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -n1 || true)"
    shifted="$(LD_PRELOAD="$faketime_lib" FAKETIME=+3600s date +%s 2>/dev/null || echo 0)"
    if [ -z "$faketime_lib" ] || [ $((shifted - $(date +%s))) -lt 3590 ]; then
        log "libfaketime does not shift the clock (library: ${faketime_lib:-none})"
        exit 1
    fi
    # tests/bootstrap asks Debian's package index (apt-cache show), not the installed
    # set; a machine that had every package may never have fetched the index.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "apt-get update (for tests/bootstrap)"
        apt-get update -qq
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
    # 4. helm, promtool, SeaweedFS and the Kubernetes control plane, built from
    #    their Go modules once and cached (about 33 minutes on a new 2-core machine).
    scripts/install-helm.sh >/dev/null
    scripts/install-promtool.sh >/dev/null
    # SeaweedFS's `weed`: a real S3-compatible store for the recording tests
    # (about 8 minutes once on a shared 2-core machine).
    scripts/install-seaweedfs.sh >/dev/null
    bin_dir="$(scripts/build-controlplane.sh)"
    # kubectl comes with the machine image; where it does not, build it from
    # the same Kubernetes module as the control plane (about 30 s once).
    if ! command -v kubectl >/dev/null && [ ! -x "$cache/bin/kubectl" ]; then
        log "building kubectl from k8s.io/kubernetes/cmd/kubectl"
        (cd "$bin_dir/../module" && GOFLAGS=-mod=mod CGO_ENABLED=0 \
            go build -trimpath -ldflags "-s -w" -o "$cache/bin/kubectl" k8s.io/kubernetes/cmd/kubectl)
    fi
    # 5. The operator and worker images, built with buildah from a Debian base
    #    made with debootstrap (about 2 minutes once; cached by their inputs).
    scripts/build-images.sh >/dev/null
fi
log "ready ($mode)"
