"""Kubernetes env and command semantics as the node agent applies them (podspec.py).

Pure logic, no cluster needed; it lives here beside the node agent it checks.
The cluster tests then show the same rules at work on real pods.
"""

from __future__ import annotations

from typing import Any

import pytest

from .podspec import PodSpecError, expand, plan_container
from .probes import ProbeState


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "worker-1",
            "namespace": "cams",
            "uid": "u-1",
            "labels": {"app": "camstream"},
        },
        "spec": {"nodeName": "node-a", "serviceAccountName": "worker", "containers": [container]},
    }


def _no_lookup(kind: str, namespace: str, name: str) -> dict[str, str] | None:
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)", "x1y2"),
        ("$(MISSING)", "$(MISSING)"),  # unknown references stay as written
        ("$$(A)", "$(A)"),  # $$ escapes
        ("$A", "$A"),  # only the $(...) form is expanded
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


def test_env_order_field_refs_and_argv_expansion() -> None:
    container = {
        "name": "main",
        "command": ["serve", "--bind", "$(POD_IP)"],
        "args": ["--id=$(ME)", "--app=$(APP)"],
        "env": [
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {
                "name": "APP",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
            },
            {"name": "GREETING", "value": "hi $(ME)"},  # refers to an earlier entry
            {"name": "LATER", "value": "$(AFTER)"},  # a later entry is not yet defined
            {"name": "AFTER", "value": "z"},
        ],
    }
    plan = plan_container(
        _pod(container),
        pod_ip="127.0.10.5",
        host_ip="127.0.0.1",
        base_env={"POD_IP": "127.0.10.5", "PATH": "/bin"},
        lookup=_no_lookup,
    )
    assert plan.argv == ("serve", "--bind", "127.0.10.5", "--id=worker-1", "--app=camstream")
    assert plan.env["NODE"] == "node-a"
    assert plan.env["GREETING"] == "hi worker-1"
    assert plan.env["LATER"] == "$(AFTER)"
    assert plan.env["PATH"] == "/bin"


def test_secret_and_configmap_refs_and_env_from() -> None:
    store = {
        ("secret", "cams", "cam-creds"): {"password": "s3cret"},
        ("configmap", "cams", "settings"): {"SEGMENT": "2", "WINDOW": "6"},
    }

    def lookup(kind: str, namespace: str, name: str) -> dict[str, str] | None:
        return store.get((kind, namespace, name))

    container = {
        "name": "main",
        "command": ["run"],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "HLS_"}],
        "env": [
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "cam-creds", "key": "password"}},
            },
            {
                "name": "OPTIONAL",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
        ],
    }
    plan = plan_container(
        _pod(container), pod_ip="127.0.10.5", host_ip="127.0.0.1", base_env={}, lookup=lookup
    )
    assert plan.env["PASSWORD"] == "s3cret"
    assert plan.env["HLS_SEGMENT"] == "2" and plan.env["HLS_WINDOW"] == "6"
    assert "OPTIONAL" not in plan.env


def test_missing_required_secret_names_it_without_values() -> None:
    container = {
        "name": "main",
        "command": ["run"],
        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}],
    }
    with pytest.raises(PodSpecError, match="'creds' key 'pw' not found"):
        plan_container(_pod(container), pod_ip="x", host_ip="y", base_env={}, lookup=_no_lookup)


def test_a_container_without_command_cannot_run_here() -> None:
    with pytest.raises(PodSpecError, match="no command"):
        plan_container(
            _pod({"name": "main", "args": ["x"]}),
            pod_ip="x",
            host_ip="y",
            base_env={},
            lookup=_no_lookup,
        )


def test_probe_thresholds_and_schedule() -> None:
    probe = {"initialDelaySeconds": 2, "periodSeconds": 1, "failureThreshold": 2}
    state = ProbeState(probe, started_at=100.0, result=False)
    assert not state.due(101.0) and state.due(102.0)
    assert state.record(True, 102.0) is True  # successThreshold defaults to 1
    assert not state.due(102.5) and state.due(103.0)
    assert state.record(False, 103.0) is True  # one failure is not enough
    assert state.record(False, 104.0) is False  # failureThreshold reached
    assert state.record(True, 105.0) is True
