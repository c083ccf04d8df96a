"""The repository root must never shadow the standard library's `operator`.

The component folder operator/ sits at the root; if it became importable as
`operator`, `python -m pytest` and everything started from the root would
break in confusing ways. These tests run exactly what a developer runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_operator_from_the_repository_root_is_the_standard_library() -> None:
    result = _run("-c", "import operator; operator.itemgetter; print(operator.__file__)")
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith(str(ROOT)), result.stdout


def test_python_m_pytest_works_from_the_repository_root() -> None:
    result = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_spec.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_no_package_is_named_operator() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_setup_cfg_packages_every_python_package() -> None:
    """A package missing from setup.cfg imports in the editable dev install but
    not in a wheel or an image: compare the list with the folders."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    roots = {
        line.split("=")[0].strip(): line.split("=")[1].strip()
        for line in config["options"]["package_dir"].strip().splitlines()
    }
    found = set()
    for name, folder in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *relative.parts)))
    assert listed == found
