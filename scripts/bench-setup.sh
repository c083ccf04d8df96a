#!/usr/bin/env bash
# What `make bench` needs beyond `scripts/bootstrap.sh run`, idempotently.
#   - MediaMTX, the worker benchmark's peer baseline, built once from its Go
#     module into the camstream cache (scripts/install-mediamtx.sh);
#   - the `bench` extra of setup.cfg (py-spy, for bench/worker_profile.py),
#     re-installed when setup.cfg changes.
# Kept apart from `make test`'s bootstrap so that CI time does not grow: no
# test needs either.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[bench-setup] %s\n' "$*" >&2; }

stamp=".venv/.bench-$(sha256sum setup.cfg | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    log "pip install -e .[bench]"
    .venv/bin/pip install -q -e '.[bench]'
    rm -f .venv/.bench-*
    touch "$stamp"
fi
log "mediamtx at $(scripts/install-mediamtx.sh)"
