#!/usr/bin/env bash
# buildah on the project's own image storage, not the machine's shared one.
#
# Who runs this: scripts/build-images.sh (builds) and tests/images (runs the
# built images). The storage lives in the cache beside the Go builds, so
# images survive between runs and `buildah images` elsewhere does not see, or
# prune, them; its run root (locks, mount state) is under /run, which a
# reboot clears, one per cache. Root only: the images are built and run as root with
# --isolation chroot (no user namespaces, no OCI runtime: this sandbox's crun
# cannot set rlimits or cgroups).
#
# Usage: scripts/buildah.sh BUILDAH-ARGS...
set -euo pipefail
cache="${CAMSTREAM_CACHE:-$HOME/.cache/camstream}"
runroot="/run/camstream-images/$(printf '%s' "$cache" | sha256sum | cut -c1-12)"
exec buildah --root "$cache/images/storage" --runroot "$runroot" --storage-driver overlay "$@"
