#!/bin/sh
# Install hls.js from the npm registry and copy its minified build next to the
# worker's other static files, where the HTTP server serves it as
# /static/hls.min.js (players never load it from a CDN).
#
# Who runs this: a developer once after cloning, .ci/run before the tests, and
# the worker image build. The copied file is git-ignored; without it the
# server answers /static/hls.min.js with a 503 page that names this script.
#
# Usage: scripts/fetch-hlsjs.sh [version-range]   (default 1.6)
# Env:   CAMSTREAM_NPM_CACHE  where npm installs the package (default $CAMSTREAM_CACHE/npm,
#        i.e. .cache/npm: the same prefix the test harness looks in, so one install serves both)
set -eu

version="${1:-1.6}"
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${CAMSTREAM_NPM_CACHE:-${CAMSTREAM_CACHE:-$root/.cache}/npm}"
target="$root/worker/camstream_worker/static/hls.min.js"

command -v npm >/dev/null 2>&1 || {
    echo "fetch-hlsjs: npm not found (Debian: apt-get install npm)" >&2
    exit 1
}

mkdir -p "$prefix"
# --no-save/--no-package-lock: the prefix is a throwaway cache, not a project.
npm install --silent --no-audit --no-fund --no-save --no-package-lock \
    --prefix "$prefix" "hls.js@$version"

src="$prefix/node_modules/hls.js/dist/hls.min.js"
[ -s "$src" ] || {
    echo "fetch-hlsjs: $src missing after npm install" >&2
    exit 1
}
# Copy through a temporary name so a running server never serves half a file.
cp "$src" "$target.tmp"
mv "$target.tmp" "$target"
installed="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$prefix/node_modules/hls.js/package.json" | head -n 1)"
echo "fetch-hlsjs: hls.js $installed -> $target"
