"""Cluster mode's Secrets: only those that opted in, in the stream's own namespace.

The reads against a real kube-apiserver (RBAC, a Secret in another namespace,
a traversal attempt) are in tests/cluster/test_chart_dryrun.py; here the
decisions on a Secret's body, and a name refused before any request.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from camstream import wire
from camstream.spec import SecretRef
from camstream_worker.cluster.secrets import KubeSecrets, value_of
from camstream_worker.errors import SecretError, SecretNotAllowed

OPTED_IN = {wire.SECRET_USAGE_LABEL: wire.SECRET_USAGE_VALUE}


def secret(labels: dict[str, str] | None, **data: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "cam", "labels": labels or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_an_opted_in_secret_gives_its_value() -> None:
    assert value_of(secret(OPTED_IN, password="s3cret"), "cams", SecretRef("cam", "password")) == (
        "s3cret"
    )


@pytest.mark.parametrize("labels", [None, {wire.SECRET_USAGE_LABEL: "tls"}, {"app": "db"}], ids=str)
def test_a_secret_that_did_not_opt_in_is_refused_by_name_never_by_value(
    labels: dict[str, str] | None,
) -> None:
    with pytest.raises(SecretNotAllowed) as caught:
        value_of(secret(labels, password="s3cret"), "cams", SecretRef("cam", "password"))
    message = str(caught.value)
    assert "Secret cams/cam" in message
    assert "camstream.io/usage=camera-credentials" in message
    assert "s3cret" not in message
    assert caught.value.reason == "SecretNotAllowed"


def test_a_missing_key_or_bad_text_names_the_key_only() -> None:
    with pytest.raises(SecretError, match="has no key 'username'"):
        value_of(secret(OPTED_IN, password="x"), "cams", SecretRef("cam", "username"))
    bad = secret(OPTED_IN)
    bad["data"] = {"password": base64.b64encode(b"\xff\xfe").decode()}
    with pytest.raises(SecretError, match="not valid UTF-8"):
        value_of(bad, "cams", SecretRef("cam", "password"))


class _NoApi:
    async def get(self, path: str) -> dict[str, Any]:
        raise AssertionError(f"no request may be made for {path}")


@pytest.mark.parametrize("name", ["..", ".", ""])
async def test_a_name_that_is_no_path_segment_makes_no_request(name: str) -> None:
    with pytest.raises(SecretError, match="not a Secret name"):
        await KubeSecrets(_NoApi()).get("cams", SecretRef(name, "password"))  # type: ignore[arg-type]
