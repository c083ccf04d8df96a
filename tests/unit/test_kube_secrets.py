"""Cluster mode's Secrets: only those that opted in, in the stream's own namespace.

The reads against a real kube-apiserver (RBAC, a Secret in another namespace,
a traversal attempt) are in tests/cluster/test_chart_dryrun.py; here the
decisions on a Secret's body, and a name refused before any request.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from camstream import kubeapi, wire
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


# -- without the API server (#14): the last value read stands in, for a bounded time


class _Api:
    """Answers GETs from `answer`: a Secret body, an exception to raise, or "hang"."""

    def __init__(self) -> None:
        self.answer: Any = secret(OPTED_IN, streamKey="k1")
        self.answer_after_hang: Any = None
        self.requests = 0
        self.release = asyncio.Event()

    async def get(self, path: str) -> dict[str, Any]:
        self.requests += 1
        answer = self.answer
        if answer == "hang":
            await self.release.wait()
            answer = self.answer_after_hang
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


KEY = SecretRef("cam", "streamKey")
DOWN = kubeapi.TransportError("connection refused")


def _secrets(api: _Api, now: list[float]) -> KubeSecrets:
    return KubeSecrets(
        api,  # type: ignore[arg-type]
        ttl=10.0,
        stale_limit=600.0,
        refresh_wait=0.2,
        clock=lambda: now[0],
    )


@pytest.mark.parametrize(
    "failure",
    [DOWN, kubeapi.ApiError(503, "ServiceUnavailable", "etcd"), kubeapi.ApiError(429, "Tx", "")],
    ids=["no answer", "503", "429"],
)
async def test_the_api_server_away_the_last_value_stands_in(failure: Exception) -> None:
    api, now = _Api(), [0.0]
    secrets = _secrets(api, now)
    assert await secrets.get("cams", KEY) == "k1"
    now[0] = 5.0
    assert await secrets.get("cams", KEY) == "k1" and api.requests == 1  # fresh: no request
    api.answer = failure
    now[0] = 300.0
    assert await secrets.get("cams", KEY) == "k1"
    assert secrets.stale_answers == 1 and api.requests == 2
    now[0] = 601.0  # past the limit: nothing stands in any more
    with pytest.raises(SecretError, match="could not be read"):
        await secrets.get("cams", KEY)


async def test_a_slow_api_server_is_waited_for_briefly_and_its_answer_kept() -> None:
    api, now = _Api(), [0.0]
    secrets = _secrets(api, now)
    assert await secrets.get("cams", KEY) == "k1"
    api.answer, api.answer_after_hang = "hang", secret(OPTED_IN, streamKey="k2")
    now[0] = 30.0
    started = time.monotonic()
    assert await secrets.get("cams", KEY) == "k1"
    assert time.monotonic() - started < 1.0
    assert await secrets.get("cams", KEY) == "k1" and api.requests == 2  # one read at a time
    api.release.set()
    await asyncio.sleep(0.05)
    api.answer = DOWN
    assert await secrets.get("cams", KEY) == "k2" and api.requests == 2  # the late answer, fresh


@pytest.mark.parametrize(
    "answer",
    [
        kubeapi.NotFound(404, "NotFound", "gone"),
        kubeapi.Forbidden(403, "Forbidden", "rbac"),
        secret(None, streamKey="k1"),  # no longer opted in
        secret(OPTED_IN, other="x"),  # the key removed
    ],
    ids=["deleted", "forbidden", "opted out", "key removed"],
)
async def test_an_answer_that_says_no_is_never_overruled_by_the_old_value(answer: Any) -> None:
    api, now = _Api(), [0.0]
    secrets = _secrets(api, now)
    assert await secrets.get("cams", KEY) == "k1"
    api.answer = answer
    now[0] = 30.0
    with pytest.raises(SecretError):
        await secrets.get("cams", KEY)
    api.answer = DOWN  # and the old value is gone for good
    with pytest.raises(SecretError, match="could not be read"):
        await secrets.get("cams", KEY)


async def test_with_nothing_read_yet_an_unreachable_api_server_refuses() -> None:
    api, now = _Api(), [0.0]
    api.answer = DOWN
    with pytest.raises(SecretError, match="could not be read"):
        await _secrets(api, now).get("cams", KEY)
