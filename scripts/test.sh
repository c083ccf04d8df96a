#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, layering, then every test
# (unit, real media, chart, real Kubernetes control plane). Figures from the
# benchmarks are printed by bench/, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
# The venv's tools, then what bootstrap built into the cache (helm, promtool,
# and kubectl where the machine has none).
export PATH="$PWD/.venv/bin:$PATH:${CAMSTREAM_CACHE:-$HOME/.cache/camstream}/bin"
echo "== ruff"; ruff check camstream camstream_cli operator worker tests bench
echo "== mypy"; mypy camstream camstream_cli operator/camstream_operator worker/camstream_worker
echo "== import layers"; lint-imports
echo "== pytest"
# The 25 slowest set-ups and tests close the log: where the suite's time goes
# (it must stay within 45 minutes on a fresh machine, builds included).
exec pytest -ra --durations=25 --timeout=900 --junitxml=artifacts/junit.xml "$@"
