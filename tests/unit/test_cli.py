"""The `camstream` command (camstream_cli): lazy per command; setting errors name the setting.

Each case runs the command in a fresh interpreter, as a user or a pod would,
so what it imports is what a real start imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs `camstream <argv>` and then reports which of our and PyAV's modules it loaded.
PROBE = """
import sys
from camstream_cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
watched = ("av", "camstream_worker", "camstream_operator", "kopf")
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(watched))
print("LOADED", " ".join(loaded))
"""


def _camstream(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camstream_cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _loaded(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("LOADED"))
    return set(line.split()[1:])


def test_help_lists_every_command() -> None:
    result = _camstream("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "demo", "worker", "edge", "operator"):
        assert command in result.stdout


def test_the_operator_never_loads_the_worker_nor_pyav() -> None:
    loaded = _loaded("operator", "--help")
    assert "camstream_operator" in loaded
    assert not loaded & {"camstream_worker", "av"}, loaded


def test_the_worker_never_loads_the_operator() -> None:
    loaded = _loaded("worker", "--help")
    assert "camstream_worker" in loaded
    assert not loaded & {"camstream_operator", "kopf"}, loaded


def test_the_edge_loads_neither_pyav_nor_the_operator() -> None:
    # An edge pod holds sockets only: PyAV's libraries would be its biggest cost.
    loaded = _loaded("edge", "--help")
    assert "camstream_worker" in loaded
    assert not loaded & {"camstream_operator", "kopf", "av"}, loaded


def test_a_bad_edge_setting_is_named_with_its_flag_and_exits_2() -> None:
    result = _camstream("edge", "--help", CAMSTREAM_EDGE_DRAIN_SECONDS="long")
    assert result.returncode == 2
    assert "CAMSTREAM_EDGE_DRAIN_SECONDS=long" in result.stderr
    assert "--drain-seconds" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_environment_setting_is_named_with_its_flag_and_exits_2() -> None:
    result = _camstream("worker", "--help", CAMSTREAM_PROCESSES="four")
    assert result.returncode == 2
    assert "CAMSTREAM_PROCESSES=four" in result.stderr and "--processes" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_log_level_is_named_and_exits_2() -> None:
    # Checked before the command starts anything (the manifest need not exist).
    result = _camstream("run", "-f", "absent.yaml", CAMSTREAM_LOG_LEVEL="LOUD")
    assert result.returncode == 2
    assert "CAMSTREAM_LOG_LEVEL=LOUD" in result.stderr
    assert "Traceback" not in result.stderr
