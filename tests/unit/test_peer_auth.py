"""Signed worker-to-worker requests (cluster/peer_auth.py): properties of sign and check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.cluster import peer_auth
from camstream_worker.cluster.peer_auth import FRESH_SECONDS, check, sign

TOKEN = "peer-token-0123456789abcdef"
PATH = "/internal/fence/cams/door"
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
paths = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)


@given(now=times, lag=st.floats(min_value=-FRESH_SECONDS + 1, max_value=FRESH_SECONDS - 1))
def test_a_signature_is_accepted_within_the_freshness_window(now: float, lag: float) -> None:
    assert check(TOKEN, "POST", PATH, sign(TOKEN, "POST", PATH, now), now + lag) is None


@given(now=times, lag=st.floats(min_value=FRESH_SECONDS + 1, max_value=1e6))
def test_a_stale_or_future_signature_is_refused(now: float, lag: float) -> None:
    header = sign(TOKEN, "POST", PATH, now)
    assert check(TOKEN, "POST", PATH, header, now + lag) == "stale peer signature"
    assert check(TOKEN, "POST", PATH, header, now - lag) == "stale peer signature"


@given(now=times, path=paths, other=paths)
def test_a_signature_vouches_for_its_own_path_and_method_only(
    now: float, path: str, other: str
) -> None:
    header = sign(TOKEN, "POST", path, now)
    assert check(TOKEN, "POST", path, header, now) is None
    assert check(TOKEN, "GET", path, header, now) == "bad peer signature"
    if other != path:
        assert check(TOKEN, "POST", other, header, now) == "bad peer signature"


@given(now=times, token=st.text(min_size=16, max_size=64))
def test_another_token_does_not_verify_and_the_token_is_never_in_the_header(
    now: float, token: str
) -> None:
    header = sign(token, "POST", PATH, now)
    assert token not in header
    if token != TOKEN:
        assert check(TOKEN, "POST", PATH, header, now) == "bad peer signature"


@given(now=times, timestamp=st.integers(min_value=0, max_value=10**11))
def test_a_changed_timestamp_breaks_the_signature(now: float, timestamp: int) -> None:
    header = sign(TOKEN, "POST", PATH, now)
    forged = header.replace(f"t={int(now)},", f"t={timestamp},")
    expected = None if timestamp == int(now) else "bad peer signature"
    assert check(TOKEN, "POST", PATH, forged, float(timestamp)) == expected


@given(header=st.one_of(st.none(), st.text(max_size=300)))
def test_anything_unsigned_is_refused_and_without_a_token_everything(header: str | None) -> None:
    assert check(TOKEN, "POST", PATH, header, 1000.0) is not None
    assert check(None, "POST", PATH, sign(TOKEN, "POST", PATH, 1000.0), 1000.0) == (
        "no peer token configured here"
    )


def test_the_token_comes_from_the_environment_and_a_short_one_is_refused() -> None:
    assert peer_auth.token_from_env({}) is None
    assert peer_auth.token_from_env({peer_auth.TOKEN_ENV: TOKEN}) == TOKEN
    with pytest.raises(ValueError) as refused:
        peer_auth.token_from_env({peer_auth.TOKEN_ENV: "short-secret"})
    assert "short-secret" not in str(refused.value)
    assert peer_auth.TOKEN_ENV in str(refused.value)


@settings(deadline=None)  # the machine is shared: no wall-clock deadline
@given(body=st.binary(max_size=300), other=st.binary(max_size=300))
def test_an_answer_is_signed_over_its_body(body: bytes, other: bytes) -> None:
    """The fence's answer carries segments: its signature holds for its own body only."""
    now = 1_800_000_000.0
    path = "/internal/fence/cams/door"
    header = sign(TOKEN, peer_auth.ANSWER, peer_auth.answer_path(path, body), now)
    assert check(TOKEN, peer_auth.ANSWER, peer_auth.answer_path(path, body), header, now) is None
    assert check(TOKEN, "POST", path, header, now) is not None  # not a request's signature
    if other != body:
        changed = peer_auth.answer_path(path, other)
        assert check(TOKEN, peer_auth.ANSWER, changed, header, now) is not None
