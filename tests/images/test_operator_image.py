"""The operator image starts its entrypoint and carries no PyAV."""

from __future__ import annotations

import pytest

from .conftest import Image

pytestmark = [pytest.mark.images, pytest.mark.timeout(300)]

PYTHON = "/opt/venv/bin/python"  # the images' venv (Dockerfile: /opt/venv)
FIND_PYAV = "import importlib.util; print(importlib.util.find_spec('av'))"

# Runs the entrypoint script in-process with the given arguments, then prints
# the process's uid and the top-level modules it loaded.
ENTRYPOINT_IMPORTS = """
import os, runpy, sys
print("UID", os.getuid(), os.geteuid())
script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
loaded = sorted({name.split(".")[0] for name in sys.modules})
print("LOADED", " ".join(loaded))
"""


def loaded_modules(stdout: str) -> list[str]:
    (line,) = [line for line in stdout.splitlines() if line.startswith("LOADED ")]
    return line.split()[1:]


def test_operator_entrypoint_answers_help(operator_image: Image) -> None:
    command = operator_image.command()
    assert command == ["/opt/venv/bin/camstream", "operator", "--help"]
    with operator_image.container() as box:
        result = box.run(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: camstream operator" in result.stdout
    assert "--partitions" in result.stdout


def test_operator_image_has_no_pyav(operator_image: Image) -> None:
    (program, *_) = operator_image.config()["Entrypoint"]
    with operator_image.container() as box:
        found = box.run(PYTHON, "-c", FIND_PYAV)
        assert found.returncode == 0, found.stderr
        assert found.stdout.strip() == "None", "PyAV is installed in the operator image"
        # The entrypoint's whole path (camstream → operator CLI) loads without it.
        ran = box.run(PYTHON, "-c", ENTRYPOINT_IMPORTS, program, "operator", "--help")
    assert ran.returncode == 0, ran.stderr[-3000:]
    loaded = loaded_modules(ran.stdout)
    assert "camstream_operator" in loaded
    assert "av" not in loaded
    # The process that ran the entrypoint is the image's user, not root.
    uid = operator_image.config()["User"].split(":")[0]
    assert f"UID {uid} {uid}" in ran.stdout.splitlines()


def test_operator_command_imports_no_pyav_even_where_it_is_installed(worker_image: Image) -> None:
    """The worker image has PyAV: `camstream operator` must still not load it."""
    (program, *_) = worker_image.config()["Entrypoint"]
    with worker_image.container() as box:
        assert box.run(PYTHON, "-c", "import av").returncode == 0
        ran = box.run(PYTHON, "-c", ENTRYPOINT_IMPORTS, program, "operator", "--help")
    assert ran.returncode == 0, ran.stderr[-3000:]
    loaded = loaded_modules(ran.stdout)
    assert "camstream_operator" in loaded
    assert "av" not in loaded
