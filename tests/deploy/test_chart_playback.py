"""The chart's playback-access values (README.md "Playback access"), rendered by helm.

Defaults add no flag at all (the worker's own defaults apply, so an install
without these values runs as before); each value becomes the flag the worker
reads, Secrets are mounted read-only where the flags point, the admin port
leaves the playback Service, the ServiceMonitor follows it with its token,
every flag is one `camstream worker` accepts, and bad values fail with a
readable message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from .conftest import RELEASE, Helm, clean_stderr, container, one

WORKER = f"{RELEASE}-worker"
PLAYBACK_FLAGS = {
    "--playback-auth",
    "--require-playback-auth",
    "--jwt-jwks-url",
    "--jwt-keys-file",
    "--jwt-issuer",
    "--jwt-audience",
    "--cors-origin",
    "--http-idle-timeout",
    "--http-max-connections",
    "--http-max-header-bytes",
    "--admin-port",
    "--admin-token-file",
}
EVERYTHING = [
    "playback.auth.defaultMode=jwt",
    "playback.auth.required=true",
    "playback.auth.jwt.keysSecret.name=idp-keys",
    "playback.auth.jwt.issuer=https://idp.example.com",
    "playback.auth.jwt.audience=cams",
    "playback.corsOrigins={https://app.example.com,https://ops.example.com}",
    "worker.http.idleTimeoutSeconds=10",
    "worker.http.maxConnections=4096",
    "worker.http.maxHeaderBytes=16384",
    "worker.admin.port=9090",
    "worker.admin.tokenSecret.name=cams-admin",
    "metrics.serviceMonitor.enabled=true",
]


def worker_args(objects: list[dict[str, Any]]) -> list[str]:
    return list(container(one(objects, "StatefulSet", WORKER), "worker")["args"])


def test_defaults_pass_no_playback_flag(helm: Helm) -> None:
    args = worker_args(helm.render())
    assert not PLAYBACK_FLAGS & set(args), args


def test_every_value_becomes_its_flag_and_mount(helm: Helm) -> None:
    objects = helm.render(sets=EVERYTHING)
    args = worker_args(objects)
    pairs = [(a, b) for a, b in zip(args, [*args[1:], ""], strict=True) if a in PLAYBACK_FLAGS]
    assert ("--playback-auth", "jwt") in pairs
    assert ("--require-playback-auth", "--jwt-keys-file") in pairs  # a switch, no value
    assert ("--jwt-keys-file", "/etc/camstream/jwt/jwks.json") in pairs
    assert ("--jwt-issuer", "https://idp.example.com") in pairs
    assert ("--jwt-audience", "cams") in pairs
    assert [b for a, b in pairs if a == "--cors-origin"] == [
        "https://app.example.com",
        "https://ops.example.com",
    ]
    assert ("--http-idle-timeout", "10") in pairs
    assert ("--http-max-connections", "4096") in pairs
    assert ("--http-max-header-bytes", "16384") in pairs
    assert ("--admin-port", "9090") in pairs
    assert ("--admin-token-file", "/etc/camstream/admin/token") in pairs

    sts = one(objects, "StatefulSet", WORKER)
    c = container(sts, "worker")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert (
        mounts["jwt-keys"]["mountPath"] == "/etc/camstream/jwt" and mounts["jwt-keys"]["readOnly"]
    )
    assert mounts["admin-token"]["mountPath"] == "/etc/camstream/admin"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["jwt-keys"]["secret"]["secretName"] == "idp-keys"
    assert volumes["admin-token"]["secret"] == {
        "secretName": "cams-admin",
        "items": [{"key": "token", "path": "token"}],
    }
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["admin"] == 9090
    # Probes stay on the public port: the kubelet needs no token.
    assert c["readinessProbe"]["httpGet"]["port"] == "http"

    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    headless = {p["name"]: p["port"] for p in services[WORKER]["spec"]["ports"]}
    assert headless["admin"] == 9090
    playback = {p["name"] for p in services[f"{RELEASE}-playback"]["spec"]["ports"]}
    assert playback == {"http"}, "the admin surface must not be on the playback Service"
    monitor = one(objects, "ServiceMonitor", WORKER)["spec"]["endpoints"][0]
    assert monitor["port"] == "admin"
    assert monitor["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "cams-admin", "key": "token"},
    }


def test_a_jwks_url_and_signed_default(helm: Helm) -> None:
    args = worker_args(
        helm.render(
            sets=[
                "playback.auth.defaultMode=signed",
                "playback.auth.jwt.jwksUrl=https://idp.example.com/jwks.json",
            ]
        )
    )
    assert args[args.index("--playback-auth") + 1] == "signed"
    assert args[args.index("--jwt-jwks-url") + 1] == "https://idp.example.com/jwks.json"
    assert "--cors-origin" not in args  # ["*"] is the worker's default


def test_every_playback_flag_is_one_the_worker_accepts(helm: Helm) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "camstream_cli", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    known = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    assert PLAYBACK_FLAGS <= known, PLAYBACK_FLAGS - known
    for sets in (EVERYTHING, ["playback.auth.jwt.jwksUrl=https://idp/k"]):
        flags = {a for a in worker_args(helm.render(sets=sets)) if a.startswith("--")}
        assert flags <= known, flags - known


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["playback.auth.defaultMode=open"], "playback/auth/defaultMode"),
        (["playback.corsOrigins={https://app.example.com/player}"], "playback/corsOrigins/0"),
        (["playback.auth.jwt.jwksUrl=ftp://idp/keys"], "playback/auth/jwt/jwksUrl"),
        (["worker.http.idleTimeoutSeconds=0"], "worker/http/idleTimeoutSeconds"),
        (["worker.admin.port=70000"], "worker/admin/port"),
        (["worker.admin.tokenSecret.name=Bad_Name"], "worker/admin/tokenSecret/name"),
        (["playback.auth.defaultMode=jwt"], "needs playback.auth.jwt.jwksUrl"),
        (
            ["playback.auth.jwt.jwksUrl=https://idp/k", "playback.auth.jwt.keysSecret.name=k"],
            "not both",
        ),
        (["worker.admin.port=8080"], "worker.admin.port (8080) must differ"),
    ],
)
def test_bad_values_are_refused_readably(helm: Helm, sets: list[str], expected: str) -> None:
    result = helm.template(sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    message = clean_stderr(result.stderr)
    assert expected in message, message
    assert len(message) < 2000
