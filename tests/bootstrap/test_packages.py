"""What the bootstrap installs against what the tests need, on any machine.

A fresh machine found that timeoverlay's package was missing from the install
list only because the check after the install failed there; a machine that
already had the package hid it. These tests read the same lists the scripts
read (scripts/deps/) and ask Debian's package index, not the machine's
installed set, so a package dropped from a list fails here everywhere:

- every element of gstreamer-elements.txt is in the `Gstreamer-Elements`
  field (`apt-cache show`) of a package in apt-media.txt;
- the harness's RTSP camera pipelines use only listed elements;
- the scripts read the lists instead of naming packages or elements again.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / "scripts" / "deps"
RTSP_CAMERA = REPO / "worker" / "camstream_worker" / "testcams" / "rtsp_camera.py"


def read_list(path: Path) -> list[str]:
    """The first word of each line, without `#` comments: what scripts/apt-install.sh reads."""
    words = [line.split("#", 1)[0].split() for line in path.read_text().splitlines()]
    return [w[0] for w in words if w]


@cache
def gstreamer_elements_of(package: str) -> frozenset[str]:
    """The elements Debian says a package ships, over every version apt knows."""
    result = subprocess.run(
        ["apt-cache", "show", package], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip(), (
        f"apt-cache knows no package {package!r} (run `apt-get update` once?): {result.stderr}"
    )
    # A field may continue on indented lines.
    fields = re.findall(r"^Gstreamer-Elements:(.*(?:\n[ \t].*)*)", result.stdout, re.MULTILINE)
    return frozenset(e.strip() for f in fields for e in f.split(",") if e.strip())


def harness_launch_lines() -> list[str]:
    """Every pipeline testcams/rtsp_camera.py serves, one per mount kind.

    The module imports GStreamer's bindings, which only /usr/bin/python3 has;
    its pipeline builders are plain string functions, so they are taken out of
    the source and run here without the bindings.
    """
    tree = ast.parse(RTSP_CAMERA.read_text())
    wanted = {"KINDS", "_video_branch", "_audio_branch", "launch_line"}
    nodes: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            nodes.append(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in wanted for t in node.targets
        ):
            nodes.append(node)
    namespace: dict[str, object] = {}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(RTSP_CAMERA), "exec"), namespace)
    kinds = namespace["KINDS"]
    launch_line = namespace["launch_line"]
    assert isinstance(kinds, tuple) and callable(launch_line)
    build: Callable[..., str] = launch_line
    return [build(kind, 640, 360, 25, 1000, 50) for kind in kinds]


def elements_in(launch: str) -> set[str]:
    """Element names in a gst-launch description: the first word of each link."""
    names = set()
    for link in re.split(r"[!()]", launch):
        words = link.split()
        if words and "/" not in words[0] and "=" not in words[0] and not words[0].endswith("."):
            names.add(words[0])
    return names


MEDIA_PACKAGES = read_list(DEPS / "apt-media.txt")
NEEDED_ELEMENTS = read_list(DEPS / "gstreamer-elements.txt")


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
@pytest.mark.parametrize("element", NEEDED_ELEMENTS)
def test_each_needed_element_comes_from_a_listed_package(element: str) -> None:
    providers = [p for p in MEDIA_PACKAGES if element in gstreamer_elements_of(p)]
    assert providers, (
        f"GStreamer element {element!r} is in no package of scripts/deps/apt-media.txt "
        f"(Debian's Gstreamer-Elements field); a fresh machine would stop at the element check"
    )


def test_harness_pipelines_use_only_listed_elements() -> None:
    lines = harness_launch_lines()
    assert len(lines) >= 5
    used = set().union(*(elements_in(line) for line in lines))
    assert {"videotestsrc", "timeoverlay", "x264enc", "avenc_aac"} <= used, used
    assert used <= set(NEEDED_ELEMENTS), (
        f"the RTSP camera uses elements not in scripts/deps/gstreamer-elements.txt: "
        f"{sorted(used - set(NEEDED_ELEMENTS))}"
    )


def test_element_parser_reads_a_pipeline() -> None:
    launch = (
        '( videotestsrc is-live=true ! video/x-raw,width=640 ! timeoverlay font-desc="Sans 24" '
        "! x264enc ! rtph264pay name=pay0 audiotestsrc ! audioconvert ! queue ! mux. )"
    )
    assert elements_in(launch) == {
        "videotestsrc",
        "timeoverlay",
        "x264enc",
        "rtph264pay",
        "audioconvert",
        "queue",
    }


def test_lists_are_read_not_copied() -> None:
    """The scripts install from the lists and name no element or plugin package again."""
    scripts = {
        name: (REPO / "scripts" / name).read_text()
        for name in ("install-media-deps.sh", "bootstrap.sh")
    }
    assert "scripts/deps/apt-media.txt" in scripts["install-media-deps.sh"]
    assert "scripts/deps/gstreamer-elements.txt" in scripts["install-media-deps.sh"]
    assert "scripts/deps/apt-test.txt" in scripts["bootstrap.sh"]
    for name, text in scripts.items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "apt-get install" not in code, f"{name} installs packages itself"
        for element in NEEDED_ELEMENTS:
            assert not re.search(rf"\b{element}\b", code), f"{name} names {element} again"
        assert not re.search(r"gstreamer1\.0-|gir1\.2-", code), f"{name} names a GStreamer package"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
def test_test_packages_exist_in_debian() -> None:
    for package in read_list(DEPS / "apt-test.txt"):
        result = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", package],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0 and f"Package: {package}" in result.stdout, package


def test_libfaketime_is_a_test_package() -> None:
    """The churn suite's clock scenarios run pods under libfaketime (tests/cluster/faketime.py).

    tests/cluster/test_faketime.py fails on a machine without it; this fails
    when the list a fresh machine installs from loses it.
    """
    assert "libfaketime" in read_list(DEPS / "apt-test.txt")
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert "libfaketime does not shift the clock" in bootstrap  # the check after the install


def test_libsrt_is_listed_for_machines_and_the_worker_image() -> None:
    """The SRT ingest loads Debian's libsrt (camstream_worker/srt/libsrt.py).

    tests/srt fails on a machine without it; this fails when a list a fresh
    machine or the worker image installs from loses it, or names a package
    whose library the binding does not look for.
    """
    package = "libsrt1.5-gnutls"
    assert package in read_list(DEPS / "apt-media.txt")  # make demo, make test
    assert package in read_list(DEPS / "apt-worker-runtime.txt")  # Dockerfile.worker
    dockerfile = (REPO / "Dockerfile.worker").read_text()
    assert "scripts/deps/apt-worker-runtime.txt" in dockerfile
    library = "libsrt-gnutls.so.1.5"
    assert library in dockerfile
    binding = (REPO / "worker" / "camstream_worker" / "srt" / "libsrt.py").read_text()
    assert f'"{library}"' in binding
    assert f"CAMSTREAM_LIBSRT=/opt/venv/lib/native/{library}" in dockerfile


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
def test_runtime_and_media_packages_exist_in_debian() -> None:
    for listed in ("apt-worker-runtime.txt", "apt-media.txt"):
        for package in read_list(DEPS / listed):
            result = subprocess.run(
                ["apt-cache", "show", "--no-all-versions", package],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert result.returncode == 0 and f"Package: {package}" in result.stdout, package
