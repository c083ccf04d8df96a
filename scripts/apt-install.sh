#!/usr/bin/env bash
# Install the Debian packages that are not installed yet, from list files
# (scripts/deps/apt-*.txt: one package a line, `#` comments) and/or names.
#
# Who runs this: scripts/install-media-deps.sh (apt-media.txt) and
# scripts/bootstrap.sh test (apt-test.txt). tests/bootstrap reads the same
# lists, so a package is named in one place only.
#
# Usage: scripts/apt-install.sh [--check] LIST.txt|PACKAGE ...
#        --check installs nothing and exits 1 when something is missing.
set -euo pipefail

check_only=0
if [ "${1:-}" = "--check" ]; then check_only=1; shift; fi

packages=()
for arg in "$@"; do
    if [ -f "$arg" ]; then
        # Strip comments and blanks; the first word of a line is the package.
        mapfile -t -O "${#packages[@]}" packages < <(sed -e 's/#.*//' "$arg" | awk 'NF { print $1 }')
    else
        packages+=("$arg")
    fi
done

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$check_only" = 1 ]; then
    echo "apt-install: missing apt packages: ${missing[*]}" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "apt-install: apt-get install ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
