"""Dockerfile.operator and Dockerfile.worker, read without building them.

tests/images builds both with buildah and runs them; these checks are the
quick ones beside it: hadolint (the Dockerfile linter, with ShellCheck for RUN
lines) finds nothing; the exact ENTRYPOINT + CMD of each final stage runs from
the installed package (the operator's with PyAV made unimportable, as its
image uninstalls it); and every flag the chart passes to a container is one
that command accepts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO, Helm, container, one

DOCKERFILES = {"operator": REPO / "Dockerfile.operator", "worker": REPO / "Dockerfile.worker"}
LINT = REPO / "scripts" / "lint-dockerfiles.sh"
IMAGE_VENV_BIN = "/opt/venv/bin/"
# The installed package's scripts: the venv running the tests.
INSTALLED_BIN = Path(sys.executable).parent


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"

    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=resolve_base(parts[0], global_args), name=name))
        elif keyword == "ARG" and not stages:
            # A global ARG before the first FROM: its default is the base real users get.
            arg_name, _, default = args.strip().partition("=")
            global_args[arg_name] = default
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def resolve_base(base: str, global_args: dict[str, str]) -> str:
    """FROM ${NAME} (or $NAME) as built without --build-arg: the ARG's default."""
    match = re.fullmatch(r"\$\{?(\w+)\}?", base)
    if not match:
        return base
    name = match.group(1)
    assert global_args.get(name), f"FROM {base}: no global ARG {name} with a default"
    return global_args[name]


def global_arg_defaults(path: Path) -> dict[str, str]:
    """The ARG NAME=default lines before the first FROM."""
    defaults: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            break
        if line.startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            defaults[name] = default
    return defaults


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_command(component: str) -> list[str]:
    final = parse_dockerfile(DOCKERFILES[component])[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    cmd = final.all("CMD")
    return exec_form(entrypoint) + (exec_form(cmd[-1]) if cmd else [])


def to_installed(argv: list[str]) -> list[str]:
    """The image's /opt/venv/bin/<script> is the test venv's <script>."""
    program = argv[0]
    assert program.startswith(IMAGE_VENV_BIN), f"entrypoint {program} is not from the venv"
    local = INSTALLED_BIN / program.removeprefix(IMAGE_VENV_BIN)
    assert local.exists(), f"{local} missing: is the package installed (pip install -e .)?"
    return [str(local), *argv[1:]]


def uninstalled_distributions(component: str) -> list[str]:
    """Packages the Dockerfile removes with `pip uninstall` after installing."""
    names: list[str] = []
    for stage in parse_dockerfile(DOCKERFILES[component]):
        for run in stage.all("RUN"):
            for command in run.split("&&"):
                words = shlex.split(command)
                if "uninstall" in words:
                    names += [
                        w for w in words[words.index("uninstall") + 1 :] if not w.startswith("-")
                    ]
    return names


def run_blocking(
    argv: list[str], blocked: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run argv with the given top-level modules unimportable (as if not installed)."""
    env = dict(os.environ)
    if blocked:
        site = tmp_path / "block"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "import sys\n"
            "# Modules the image does not have: importing them must fail as it would there.\n"
            f"for _name in {blocked!r}:\n"
            "    sys.modules[_name] = None\n"
        )
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


# -- lint -----------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        ["bash", str(LINT)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Haskell Dockerfile Linter" in result.stdout
    assert "2 Dockerfile(s) clean" in result.stdout


def test_hadolint_is_a_real_linter(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run(
        ["bash", str(LINT), str(bad)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3002"):
        assert rule in result.stdout, result.stdout


# -- shape of the images ----------------------------------------------------------


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_multi_stage_slim_pinned_non_root(component: str) -> None:
    stages = parse_dockerfile(DOCKERFILES[component])
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    for stage in stages:
        assert ":" in stage.base and not stage.base.endswith(":latest"), stage.base
    final = stages[-1]
    assert final.base == "python:3.11-slim-bookworm"
    # The base is a build argument (tests/images builds from a local Debian
    # base); its default stays the public image real users build from.
    assert global_arg_defaults(DOCKERFILES[component])["BASE_IMAGE"] == final.base
    assert "FROM ${BASE_IMAGE}" in DOCKERFILES[component].read_text()
    build = next(s for s in stages if s.name == "build")
    assert build.base == final.base, "the venv is copied between identical bases"
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot can check it)"
    assert "--from=build /opt/venv /opt/venv" in " ".join(final.all("COPY"))
    # Nothing is compiled or fetched in the final stage.
    for run in final.all("RUN"):
        assert not re.search(r"\b(pip|npm|apt-get|curl|wget)\b", run), run


def test_worker_bundles_hlsjs_where_the_worker_serves_it() -> None:
    stages = parse_dockerfile(DOCKERFILES["worker"])
    node = next(s for s in stages if s.name == "hlsjs")
    assert node.base.startswith("node:")
    (arg,) = node.all("ARG")
    version = arg.split("=", 1)[1]
    assert re.fullmatch(r"1\.\d+\.\d+", version), "hls.js 1.x, pinned exactly"
    assert any('"hls.js@${HLSJS_VERSION}"' in run for run in node.all("RUN"))
    copies = " ".join(c for s in stages for c in s.all("COPY"))
    target = "worker/camstream_worker/static/hls.min.js"
    assert f"--from=hlsjs /build/node_modules/hls.js/dist/hls.min.js {target}" in copies
    # The file reaches the installed package only as package data.
    assert "camstream_worker = static/*" in (REPO / "setup.cfg").read_text()
    # The build copies the worker sources before that file, and installs after it.
    build = next(s for s in stages if s.name == "build")
    order = [kw + " " + a for kw, a in build.instructions]
    hls = next(i for i, x in enumerate(order) if target in x)
    install = next(i for i, x in enumerate(order) if "pip install ." in x)
    assert hls < install


def test_operator_image_leaves_out_pyav() -> None:
    assert uninstalled_distributions("operator") == ["av"]
    assert uninstalled_distributions("worker") == []


def test_dockerignore_keeps_what_the_builds_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "allow-list: everything else stays out of the context"
    kept = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for component, path in DOCKERFILES.items():
        for stage in parse_dockerfile(path):
            for copy in stage.all("COPY"):
                words = copy.split()
                if any(w.startswith("--from=") for w in words):
                    continue
                for source in [w.rstrip("/") for w in words[:-1] if not w.startswith("--")]:
                    assert any(k == source or k.startswith(source + "/") for k in kept), (
                        f"{component}: COPY {source} is excluded by .dockerignore"
                    )
                    assert (REPO / source).exists() or source == "README.md", source


# -- the commands the images run ---------------------------------------------------


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("operator", ["/opt/venv/bin/camstream", "operator", "--help"]),
        ("worker", ["/opt/venv/bin/camstream", "worker", "--help"]),
    ],
)
def test_entrypoints_are_the_contract(component: str, expected: list[str]) -> None:
    assert image_command(component) == expected


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_image_command_runs_from_the_installed_package(component: str, tmp_path: Path) -> None:
    argv = to_installed(image_command(component))
    if argv[-1] != "--help":
        argv.append("--help")
    result = run_blocking(argv, uninstalled_distributions(component), tmp_path)
    assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stderr[-3000:]}"
    assert f"usage: camstream {component}" in result.stdout


@pytest.mark.parametrize(
    ("component", "kind", "name"),
    [("operator", "Deployment", "cams-operator"), ("worker", "StatefulSet", "cams-worker")],
)
def test_chart_arguments_are_accepted_by_the_image_command(
    helm: Helm, component: str, kind: str, name: str, tmp_path: Path
) -> None:
    """Every --flag the chart passes is one `camstream <component>` knows."""
    argv = to_installed(image_command(component))
    help_run = run_blocking(argv, uninstalled_distributions(component), tmp_path)
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    objects = helm.render()
    args = container(one(objects, kind, name), component)["args"]
    flags = [a for a in args if a.startswith("--")]
    assert flags
    known = set(re.findall(r"--[a-z][a-z0-9-]*", help_run.stdout))
    assert set(flags) <= known, f"flags unknown to camstream {component}: {set(flags) - known}"
