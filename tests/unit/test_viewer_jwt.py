"""Viewers' JWTs (servers/http/viewer_jwt.py): real keys, real PyJWT, time passed in.

A scenario table of the tokens an attacker would try (no signature, a
symmetric algorithm keyed with the public key, another issuer, another
audience, expired, not yet valid, no exp, a stream it does not name, an
unknown key id) and a property of the streams claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.servers.http import viewer_jwt
from camstream_worker.servers.http.settings import JwtSettings

NOW = 1_900_000_000
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
SETTINGS = JwtSettings(keys_file=Path("unused"), issuer="https://idp.example", audience="camstream")


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwks(*pairs: tuple[str, Any]) -> bytes:
    keys = []
    for kid, key in pairs:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[_alg(key)].to_jwk(key.public_key())
        )
        keys.append({**jwk, "kid": kid, "use": "sig"})
    return json.dumps({"keys": keys}).encode()


def _alg(key: Any) -> str:
    return "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "https://idp.example",
        "aud": "camstream",
        "exp": NOW + 300,
        "streams": ["site-a/door"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any = EC_KEY, kid: str | None = "ec1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(**overrides), key, algorithm=_alg(key), headers=headers)


@pytest.fixture
def verifier(tmp_path: Path) -> viewer_jwt.JwtVerifier:
    path = tmp_path / "keys.json"
    path.write_bytes(jwks(("ec1", EC_KEY), ("ed1", ED_KEY)))
    return viewer_jwt.JwtVerifier(SETTINGS, viewer_jwt.FileKeys(path))


async def check(verifier: viewer_jwt.JwtVerifier, text: str, name: str = "door") -> dict:
    return await verifier.verify(text, namespace="site-a", name=name, now=NOW)


async def test_a_valid_token_names_its_streams(verifier) -> None:
    assert (await check(verifier, token()))["streams"] == ["site-a/door"]
    assert await check(verifier, token(ED_KEY, kid="ed1"))
    assert await check(verifier, token(streams=["site-a/*"]), name="gate")


def _unsigned() -> str:
    return jwt.encode(claims(), key=None, algorithm="none")


def _hs256_with_the_public_key() -> str:
    # Algorithm confusion: an attacker "signs" with the public key as an HMAC secret.
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "ec1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem(EC_KEY), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


@pytest.mark.parametrize(
    ("make", "code", "status"),
    [
        (_unsigned, "bad_algorithm", 401),
        (_hs256_with_the_public_key, "bad_algorithm", 401),
        (lambda: token(OTHER_KEY), "bad_signature", 401),
        (lambda: token(kid="nobody"), "unknown_key", 401),
        (lambda: token(iss="https://evil.example"), "wrong_issuer", 401),
        (lambda: token(aud="another-app"), "wrong_audience", 401),
        (lambda: token(exp=NOW - 31), "expired", 401),
        (lambda: token(nbf=NOW + 60), "not_yet_valid", 401),
        (lambda: token(exp=None), "missing_claim", 401),
        (lambda: token(streams=["site-a/gate"]), "wrong_stream", 403),
        (lambda: token(streams=["site-b/*"]), "wrong_stream", 403),
        (lambda: token(streams="site-a/door"), "wrong_stream", 403),  # not a list
        (lambda: "not.a.jwt", "malformed", 401),
        (lambda: "x" * 9000, "malformed", 401),
    ],
)
async def test_what_an_attacker_tries_is_refused(verifier, make, code, status) -> None:
    with pytest.raises(viewer_jwt.JwtRejected) as caught:
        await check(verifier, make())
    assert (caught.value.code, caught.value.status) == (code, status)
    assert "eyJ" not in str(caught.value)  # the message never quotes the token


async def test_leeway_on_expiry(verifier) -> None:
    assert await check(verifier, token(exp=NOW - 29))  # within 30 s of skew


async def test_pem_keys_and_a_changed_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.pem"
    path.write_bytes(public_pem(EC_KEY))
    clock = [0.0]
    keys = viewer_jwt.FileKeys(path, clock=lambda: clock[0])
    verifier = viewer_jwt.JwtVerifier(SETTINGS, keys)
    assert await check(verifier, token(kid=None))
    # A rotated Secret: the file changes; the new key is used after the recheck interval.
    path.write_bytes(public_pem(OTHER_KEY))
    import os

    os.utime(path, (1, 1))
    clock[0] += viewer_jwt.FILE_RECHECK
    assert await check(verifier, token(OTHER_KEY, kid=None))
    with pytest.raises(viewer_jwt.JwtRejected):
        await check(verifier, token(kid=None))


def test_symmetric_and_broken_jwks_entries_are_never_keys() -> None:
    document = json.loads(jwks(("ec1", EC_KEY)))
    document["keys"] += [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"},
        {"kty": "RSA", "kid": "broken"},
        {"kty": "EC", "use": "enc", "crv": "P-256", "kid": "enc"},
    ]
    keys = viewer_jwt.parse_keys(json.dumps(document).encode())
    assert [k.kid for k in keys] == ["ec1"]
    with pytest.raises(ValueError):
        viewer_jwt.parse_keys(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')


segment = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)


@given(
    st.lists(
        st.one_of(
            st.builds("{}/{}".format, segment, st.one_of(segment, st.just("*"))),
            st.integers(),
            st.none(),
        ),
        max_size=8,
    ),
    segment,
    segment,
)
def test_the_streams_claim_grants_exactly_what_it_names(claim, namespace, name) -> None:
    expected = f"{namespace}/{name}" in claim or f"{namespace}/*" in claim
    assert viewer_jwt.grants(claim, namespace, name) == expected


async def test_a_verified_signature_is_remembered_a_while_times_and_streams_never(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(jwks(("ec1", EC_KEY)))
    file_keys = viewer_jwt.FileKeys(path)
    lookups = []

    class Counting:
        async def keys(self, kid: str | None) -> Any:
            lookups.append(kid)
            return await file_keys.keys(kid)

    clock = [0.0]
    verifier = viewer_jwt.JwtVerifier(SETTINGS, Counting(), monotonic=lambda: clock[0])
    text = token(exp=NOW + 100)
    for _ in range(5):
        assert await check(verifier, text)
    assert len(lookups) == 1  # one signature check for five requests
    with pytest.raises(viewer_jwt.JwtRejected) as caught:
        await check(verifier, text, name="gate")  # remembered, still not for this stream
    assert caught.value.status == 403
    with pytest.raises(viewer_jwt.JwtRejected) as caught:
        await verifier.verify(text, namespace="site-a", name="door", now=NOW + 200)
    assert caught.value.code == "expired"  # remembered, and expired all the same
    clock[0] += viewer_jwt.VERIFIED_TTL
    assert await check(verifier, text)
    assert len(lookups) == 2  # checked again after VERIFIED_TTL (a withdrawn key stops it)
