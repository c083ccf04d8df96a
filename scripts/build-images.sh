#!/usr/bin/env bash
# Build the operator and worker images with buildah (no Docker engine), from a
# Debian bookworm base made here with debootstrap: once per machine, and again
# only for an image whose inputs changed.
#
# Who runs this: scripts/bootstrap.sh test (so `make test` builds up front,
# outside any test timeout) and tests/images/conftest.py (a session fixture:
# seconds when everything is cached). Prints `operator=REF` and `worker=REF`
# on stdout; progress goes to stderr.
#
# What it builds, in scripts/buildah.sh's storage under the cache:
#   localhost/camstream-base-python:KEY  debootstrap --variant=minbase bookworm with
#                                        python3.11, python3-venv, ca-certificates
#   localhost/camstream-base-node:KEY    that plus Debian's nodejs and npm, for the
#                                        worker's hls.js stage (NODE_IMAGE)
#   localhost/camstream-operator:KEY     Dockerfile.operator, BASE_IMAGE = the python base
#   localhost/camstream-worker:KEY       Dockerfile.worker, BASE_IMAGE and NODE_IMAGE local
# A base's KEY hashes its recipe (below); an image's hashes its Dockerfile, the
# files its COPY lines name, this script and the base image IDs, so the same
# inputs find the image already built.
#
# Network: Debian's mirror (debootstrap, apt), PyPI (pip in the builds) and
# the npm registry (hls.js); nothing else. The machine's CA bundle is bind-
# mounted over the image's during the build only, so a TLS-inspecting proxy
# works and its CA stays out of the images; the local base's pip reads the
# system bundle, as Debian's own pip does.
#
# Env: CAMSTREAM_CACHE          cache root (default ~/.cache/camstream)
#      CAMSTREAM_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#      CAMSTREAM_IMAGES_KEEP    built images kept per component (default 3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
OUT="$CACHE/images"
MIRROR="${CAMSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEEP="${CAMSTREAM_IMAGES_KEEP:-3}"
B="$ROOT/scripts/buildah.sh"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# The bases' recipe: change BASE_RECIPE when the commands below change.
SUITE=bookworm
BASE_PACKAGES=python3.11,python3-venv,ca-certificates
NODE_PACKAGES="nodejs npm"
BASE_RECIPE=1

log() { printf '[build-images] %s\n' "$*" >&2; }
# debootstrap and apt are chatty: their output goes to a log, shown on failure.
quietly() {
    "$@" >>"$OUT/build.log" 2>&1 || {
        tail -n 40 "$OUT/build.log" >&2
        log "failed: $1 (whole log: $OUT/build.log)"
        return 1
    }
}
key_of() { sha256sum | cut -c1-16; }
have_image() { "$B" inspect --type image "$1" >/dev/null 2>&1; }
image_id() { "$B" inspect --type image --format '{{.FromImageID}}' "$1"; }

for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || { log "$tool missing: scripts/bootstrap.sh test installs it"; exit 1; }
done
[ "$(id -u)" = 0 ] || { log "needs root (buildah --isolation chroot, debootstrap)"; exit 1; }
mkdir -p "$OUT"
# Working containers of a failed step are removed on the way out.
containers=()
cleanup() { for c in "${containers[@]}"; do "$B" rm "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
# One builder at a time (parallel sessions, the bootstrap and the fixture).
exec 9>"$OUT/.lock"
flock 9

# 1. The python base: Debian's packages from Debian's mirror, no registry image.
py_key="$(printf '%s\n' "$BASE_RECIPE" "$SUITE" "$BASE_PACKAGES" "$MIRROR" | key_of)"
PY_BASE="localhost/camstream-base-python:$py_key"
if ! have_image "$PY_BASE"; then
    start=$SECONDS
    rootfs="$OUT/rootfs-$py_key"
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase $SUITE ($BASE_PACKAGES) from $MIRROR (a few minutes once)"
    : >"$OUT/build.log"
    quietly debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR"
    # What a slim image leaves out: package indexes, caches, docs; and the
    # build machine's own DNS and host name, which debootstrap copied in.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    : >"$rootfs/etc/resolv.conf"
    echo localhost >"$rootfs/etc/hostname"
    # pip in a venv reads its own CA list unless told otherwise; Debian's pip
    # uses the system bundle, and so does this base's.
    printf '[global]\ncert = %s\n' "$CA_BUNDLE" >"$rootfs/etc/pip.conf"
    ctr="$("$B" from scratch)"
    containers+=("$ctr")
    mnt="$("$B" mount "$ctr")"
    tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
        | tar -C "$mnt" -xpf -
    "$B" umount "$ctr" >/dev/null
    "$B" config --env LANG=C.UTF-8 --cmd /bin/bash \
        --label org.opencontainers.image.description="Debian $SUITE minbase + $BASE_PACKAGES (debootstrap)" \
        "$ctr"
    "$B" commit --quiet --rm "$ctr" "$PY_BASE" >/dev/null
    rm -rf "$rootfs"
    log "built $PY_BASE in $((SECONDS - start)) s"
fi

# 2. The node base, only for the worker's hls.js stage (npm install hls.js).
node_key="$(printf '%s\n' "$(image_id "$PY_BASE")" "$NODE_PACKAGES" "$BASE_RECIPE" | key_of)"
NODE_BASE="localhost/camstream-base-node:$node_key"
if ! have_image "$NODE_BASE"; then
    start=$SECONDS
    log "adding Debian's $NODE_PACKAGES to the base"
    ctr="$("$B" from --pull=never "$PY_BASE")"
    containers+=("$ctr")
    # shellcheck disable=SC2086  # the package names are meant to split
    quietly "$B" run --isolation chroot "$ctr" -- sh -c "apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $NODE_PACKAGES \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*"
    # npm trusts node's own CA list by default; the build mounts the system one.
    "$B" config --env NODE_EXTRA_CA_CERTS="$CA_BUNDLE" "$ctr"
    "$B" commit --quiet --rm "$ctr" "$NODE_BASE" >/dev/null
    log "built $NODE_BASE in $((SECONDS - start)) s"
fi

# The files a Dockerfile's COPY lines name (build context, not other stages),
# without what .dockerignore leaves out of every context.
copy_sources() {
    sed -n 's/^COPY[[:space:]]\+//p' "$1" | grep -v -- '--from=' | awk '{ for (i = 1; i < NF; i++) print $i }'
}
context_hash() {
    local dockerfile="$1"
    (
        cd "$ROOT"
        sha256sum "$dockerfile" scripts/build-images.sh
        mapfile -t sources < <(copy_sources "$dockerfile")
        find "${sources[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
            ! -path 'worker/camstream_worker/static/hls.min.js' -print0 \
            | sort -z | xargs -0 sha256sum
    ) | key_of
}

build() {
    local component="$1"
    shift
    local dockerfile="Dockerfile.$component"
    local key ref start
    # The bases' IDs too: a base rebuilt under the same name is a new input.
    key="$(printf '%s\n' "$(context_hash "$dockerfile")" "$@" \
        "$(image_id "$PY_BASE")" "$(image_id "$NODE_BASE")" | key_of)"
    ref="localhost/camstream-$component:$key"
    if ! have_image "$ref"; then
        start=$SECONDS
        log "building $ref from $dockerfile"
        local args=()
        for arg in "$@"; do args+=(--build-arg "$arg"); done
        [ -s "$CA_BUNDLE" ] && args+=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
        "$B" bud --isolation chroot --pull-never --quiet \
            "${args[@]}" -f "$ROOT/$dockerfile" -t "$ref" "$ROOT" >&2
        log "built $ref in $((SECONDS - start)) s"
        # Keep the last few builds of this component (other worktrees share the cache).
        local history="$OUT/history-$component"
        echo "$ref" >>"$history"
        tail -n "$KEEP" "$history" >"$history.new"
        { grep -vxF -f "$history.new" "$history" || true; } | while read -r old; do
            "$B" rmi "$old" >/dev/null 2>&1 || true
        done
        mv "$history.new" "$history"
    fi
    echo "$component=$ref"
}

build operator "BASE_IMAGE=$PY_BASE"
build worker "BASE_IMAGE=$PY_BASE" "NODE_IMAGE=$NODE_BASE"
