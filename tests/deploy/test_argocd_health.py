"""The Argo CD health check for CameraStream, run by real Lua interpreters.

deploy/argocd/health-camerastream.lua is executed against sample resources by
Debian's lua5.4 (the CLI, as a separate process) and by Lua 5.1 through lupa
(Argo CD's gopher-lua implements Lua 5.1, so 5.1-only syntax is checked too),
with the standard libraries Argo CD's sandbox does not offer removed. The
argocd-cm patch and the docs must carry the same script.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jq
import pytest
import yaml

from camstream import partition_labels

from .conftest import REPO

ARGO = REPO / "deploy" / "argocd"
HEALTH_LUA = ARGO / "health-camerastream.lua"
CM_KEY = "resource.customizations.health.camstream.io_CameraStream"
LUA_CLI = shutil.which("lua5.4") or "/usr/bin/lua5.4"


def stream(
    phase: str | None = None,
    *,
    enabled: bool | None = None,
    generation: int = 1,
    observed: int | None = 1,
    reason: str | None = None,
    message: str | None = None,
    worker: str | None = "cams-worker-0",
    conditions: list[dict[str, Any]] | None = None,
    with_status: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"protocol": "rtsp", "url": "rtsp://127.0.0.1:8554/cam1"}}
    if enabled is not None:
        spec["enabled"] = enabled
    obj: dict[str, Any] = {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": "gate", "namespace": "site-a", "generation": generation},
        "spec": spec,
    }
    if with_status:
        status: dict[str, Any] = {}
        if phase is not None:
            status["phase"] = phase
        if observed is not None:
            status["observedGeneration"] = observed
        if reason is not None:
            status["reason"] = reason
        if message is not None:
            status["message"] = message
        if worker is not None:
            status["worker"] = worker
        if conditions is not None:
            status["conditions"] = conditions
        obj["status"] = status
    return obj


# (sample, expected status, fragment of the message)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "live": (stream("Live"), "Healthy", "Live on cams-worker-0"),
    "pending": (stream("Pending", worker=None), "Progressing", "Pending"),
    "connecting": (stream("Connecting"), "Progressing", "Connecting on cams-worker-0"),
    "no-status": (stream(with_status=False), "Progressing", "Waiting for the stream's worker"),
    "empty-status": (stream(observed=None, worker=None), "Progressing", "Waiting"),
    "failed": (
        stream("Failed", reason="SourceUnreachable", message="connection refused"),
        "Degraded",
        "SourceUnreachable: connection refused",
    ),
    "reconnecting": (stream("Reconnecting", reason="Stalled"), "Degraded", "Stalled"),
    "invalid": (stream("Invalid", reason="BadURL", worker=None), "Degraded", "BadURL"),
    "degraded-condition": (
        stream(
            "Live",
            conditions=[
                {"type": "Ready", "status": "True"},
                {"type": "Degraded", "status": "True", "reason": "NoAudio"},
            ],
        ),
        "Degraded",
        "NoAudio",
    ),
    "degraded-condition-false": (
        stream("Live", conditions=[{"type": "Degraded", "status": "False"}]),
        "Healthy",
        "Live",
    ),
    "paused": (stream("Live", enabled=False), "Suspended", "paused"),
    "paused-no-status": (stream(enabled=False, with_status=False), "Suspended", "paused"),
    "stopped": (stream("Stopped", worker=None), "Suspended", "Stopped"),
    "enabled-true-live": (stream("Live", enabled=True), "Healthy", "Live"),
    "stale-generation": (stream("Live", generation=3, observed=2), "Progressing", "latest spec"),
    "unknown-phase": (stream("Exploded"), "Unknown", "Exploded"),
}


def lua_literal(value: Any) -> str:
    """A Python JSON-like value as a Lua table constructor (arrays 1-indexed)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes here
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        items = ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(type(value))


def run_lua54(obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    runner = tmp_path / "runner.lua"
    runner.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({json.dumps(str(HEALTH_LUA))})\n"
        'io.write(hs.status, "\\n", hs.message or "", "\\n")\n'
    )
    result = subprocess.run(
        [LUA_CLI, str(runner)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    status, message = result.stdout.split("\n", 1)
    return status, message.rstrip("\n")


def run_lua51_sandboxed(obj: dict[str, Any]) -> tuple[str, str]:
    from lupa import lua51  # type: ignore[import-untyped]

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD's interpreter offers no file, process or module access.
    lua.execute("os = nil; io = nil; require = nil; dofile = nil; loadfile = nil; package = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(HEALTH_LUA.read_text())
    return str(hs["status"]), str(hs["message"])


def test_lua54_is_the_debian_interpreter() -> None:
    result = subprocess.run([LUA_CLI, "-v"], capture_output=True, text=True, check=True)
    assert "Lua 5.4" in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_health_lua54(case: str, tmp_path: Path) -> None:
    obj, expected, fragment = CASES[case]
    status, message = run_lua54(obj, tmp_path)
    assert status == expected, message
    assert fragment in message


@pytest.mark.parametrize("case", sorted(CASES))
def test_health_lua51_sandboxed(case: str) -> None:
    obj, expected, fragment = CASES[case]
    status, message = run_lua51_sandboxed(obj)
    assert status == expected, message
    assert fragment in message


def test_health_message_never_shows_the_source_url(tmp_path: Path) -> None:
    # The URL may carry a camera's address; health messages stay generic.
    for obj, _, _ in CASES.values():
        _, message = run_lua54(obj, tmp_path)
        assert "rtsp://" not in message


def test_argocd_cm_patch_carries_the_same_script() -> None:
    patch = yaml.safe_load((ARGO / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][CM_KEY] == HEALTH_LUA.read_text()


def test_example_applications_ignore_only_the_partition_labels() -> None:
    docs = list(yaml.safe_load_all((ARGO / "application.yaml").read_text()))
    apps = {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "Application"}
    assert set(apps) == {"camstream", "cameras-site-a"}
    platform = apps["camstream"]["spec"]["source"]
    assert platform["path"] == "helm/camstream"
    cameras = apps["cameras-site-a"]["spec"]
    (ignore,) = cameras["ignoreDifferences"]
    assert ignore["group"] == "camstream.io" and ignore["kind"] == "CameraStream"
    (expression,) = ignore["jqPathExpressions"]
    # Argo CD evaluates the expression as paths (gojq); libjq agrees on this one.
    stream = {
        "metadata": {
            "name": "gate",
            "labels": {"site": "a", **partition_labels.labels_for("site-a", "gate", 256)},
            "annotations": {"camstream.io/partition-256": "not a label"},
        },
        "spec": {"source": {"protocol": "rtsp"}},
    }
    paths = jq.compile(f"[path({expression})]").input_value(stream).first()
    assert sorted(tuple(p) for p in paths) == sorted(
        ("metadata", "labels", key) for key in partition_labels.labels_for("site-a", "gate", 256)
    )
    assert "RespectIgnoreDifferences=true" in cameras["syncPolicy"]["syncOptions"]
    for app in apps.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["spec"]["destination"]["server"]


def ignore_expression() -> str:
    docs = list(yaml.safe_load_all((ARGO / "application.yaml").read_text()))
    cameras = next(d for d in docs if d and d["metadata"]["name"] == "cameras-site-a")
    return str(cameras["spec"]["ignoreDifferences"][0]["jqPathExpressions"][0])


def test_gitops_guide_names_the_customization_key() -> None:
    guide = (REPO / "docs" / "gitops.md").read_text()
    assert CM_KEY in guide
    assert ignore_expression() in guide
    assert "deploy/argocd/argocd-cm-patch.yaml" in guide
