"""Viewers' JSON Web Tokens: the keys that sign them and the claims they must carry.

Who calls this: access.py, for streams whose `spec.playback.auth.mode` is
`jwt`. The token's signature, algorithm and audience/issuer are checked by
PyJWT; this module chooses the key and reads camstream's own claim.

What a token must say (claims):
    exp       required; nbf honoured; both with settings.JWT_LEEWAY of clock skew
    aud       must contain the configured audience (default "camstream")
    iss       must equal the configured issuer, if one is configured
    streams   list of "<namespace>/<name>" or "<namespace>/*" the holder may watch

Keys, public only (a worker can verify but never mint; HS* and "none" are
refused): a JWKS document or PEM public keys in a file (a mounted Secret;
re-read when the file changes), or a JWKS URL fetched with bounds: at most
JWKS_MAX_BYTES and JWKS_MAX_KEYS, within JWKS_TIMEOUT, refreshed every
JWKS_REFRESH, and at most once per JWKS_MIN_REFETCH when a token names an
unknown key id (so a stream of made-up key ids cannot turn the worker into
a flood against the issuer). When a refresh fails the last good keys are kept.

A viewer's player sends the same token with every playlist and segment
request (one or two a second), and an ECDSA or RSA verification costs a few
hundred microseconds: a token whose signature verified is remembered (by its
SHA-256, at most VERIFIED_CACHE of them, for at most VERIFIED_TTL so that a
key withdrawn from the JWKS stops working within that time). Its times and
its streams claim are still checked on every request.

Errors never quote the token or the key material: `JwtRejected.code` is one
of a few fixed words.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from camstream_worker.servers.http.settings import JwtSettings

log = logging.getLogger(__name__)

STREAMS_CLAIM = "streams"
MAX_TOKEN_CHARS = 8192
MAX_STREAMS_CLAIM = 1000
JWKS_MAX_BYTES = 64 * 1024
JWKS_MAX_KEYS = 32
JWKS_TIMEOUT = 5.0
JWKS_REFRESH = 300.0
JWKS_MIN_REFETCH = 30.0
FILE_RECHECK = 10.0
VERIFIED_CACHE = 4096
VERIFIED_TTL = 60.0
# The key families each algorithm may be verified with.
_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwtRejected(Exception):
    """The token grants nothing here (401, or 403 for a genuine token that
    does not name this stream)."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class KeysUnavailable(Exception):
    """No key could be had at all (no JWKS fetched yet, an unreadable file): 503."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str | None
    family: str  # RSA, EC or OKP
    alg: str | None  # the JWK's own "alg", if it names one
    key: Any  # a cryptography public key


class KeySource(Protocol):
    async def keys(self, kid: str | None) -> Sequence[PublicKey]: ...


def parse_keys(data: bytes) -> list[PublicKey]:
    """Public keys from a JWKS document or from PEM text (one key or several)."""
    text = data.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        return _jwks_keys(json.loads(text))
    keys: list[PublicKey] = []
    for block in text.split("-----END PUBLIC KEY-----"):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        pem = block[block.index("-----BEGIN PUBLIC KEY-----") :] + "-----END PUBLIC KEY-----\n"
        key = load_pem_public_key(pem.encode())
        keys.append(PublicKey(None, _family_of(key), None, key))
    if not keys:
        raise ValueError("neither a JWKS document nor PEM public keys")
    return keys[:JWKS_MAX_KEYS]


def _jwks_keys(document: Any) -> list[PublicKey]:
    items = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise ValueError("a JWKS document needs a keys list")
    keys: list[PublicKey] = []
    for item in items[:JWKS_MAX_KEYS]:
        if not isinstance(item, Mapping) or item.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # symmetric ("oct") and unknown keys are never used
        if item.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(dict(item))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # one unusable key does not spoil the others
        kid = item.get("kid")
        keys.append(
            PublicKey(
                kid if isinstance(kid, str) else None,
                str(item["kty"]),
                item.get("alg") if isinstance(item.get("alg"), str) else None,
                jwk.key,
            )
        )
    if not keys:
        raise ValueError("the JWKS document holds no usable public signing key")
    return keys


def _family_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "OKP"
    raise ValueError("unsupported public key type")


class FileKeys:
    """Keys from a file (a JWKS document or PEM), re-read when it changes."""

    def __init__(self, path: Path, *, clock: Any = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._keys: list[PublicKey] = []
        self._stamp: float | None = None
        self._checked = -FILE_RECHECK
        self._reload()

    def _reload(self) -> None:
        now = self._clock()
        if now - self._checked < FILE_RECHECK:
            return
        self._checked = now
        try:
            stamp = self._path.stat().st_mtime
            if stamp == self._stamp:
                return
            self._keys = parse_keys(self._path.read_bytes())
            self._stamp = stamp
        except (OSError, ValueError) as exc:
            # Keep the keys we had; say why once per check.
            log.warning("viewer JWT keys file unusable: %s", type(exc).__name__)

    async def keys(self, kid: str | None) -> Sequence[PublicKey]:
        self._reload()
        if not self._keys:
            raise KeysUnavailable("no usable key in the JWT keys file")
        return self._keys


class JwksKeys:
    """Keys from a JWKS URL: cached, bounded, refreshed; one fetch at a time."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Any = time.monotonic,
        refresh: float = JWKS_REFRESH,
        min_refetch: float = JWKS_MIN_REFETCH,
    ) -> None:
        self._url = url
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._refresh = refresh
        self._min_refetch = min_refetch
        self._keys: list[PublicKey] = []
        self._fetched_at: float | None = None  # last attempt, good or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def keys(self, kid: str | None) -> Sequence[PublicKey]:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._refresh
        unknown = kid is not None and all(k.kid != kid for k in self._keys)
        may_refetch = self._fetched_at is None or now - self._fetched_at >= self._min_refetch
        if stale or (unknown and may_refetch):
            async with self._lock:
                # Another request may have fetched while this one waited.
                if self._fetched_at is None or self._clock() - self._fetched_at >= min(
                    self._min_refetch, self._refresh
                ):
                    await self._fetch()
        if not self._keys:
            raise KeysUnavailable("the JWKS URL gave no usable key")
        return self._keys

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=JWKS_TIMEOUT)
            async with self._session.get(
                self._url, timeout=timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await response.content.read(JWKS_MAX_BYTES + 1)
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError(f"larger than {JWKS_MAX_BYTES} bytes")
            self._keys = parse_keys(body)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            # The URL is configuration, not a secret, but keep logs short.
            reason = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            log.warning(
                "fetching the viewer JWKS failed (%s); keeping %d keys", reason, len(self._keys)
            )


class JwtVerifier:
    def __init__(
        self,
        settings: JwtSettings,
        keys: KeySource,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._monotonic = monotonic
        # sha256(token) -> (verified until, claims)
        self._verified: OrderedDict[bytes, tuple[float, dict[str, Any]]] = OrderedDict()

    async def verify(self, token: str, *, namespace: str, name: str, now: float) -> dict[str, Any]:
        """The token's claims if it lets its holder watch namespace/name at `now`."""
        if len(token) > MAX_TOKEN_CHARS:
            raise JwtRejected("malformed", "the token is too long")
        claims = self._remembered(token)
        if claims is None:
            claims = await self._verify_signature(token)
        _check_times(claims, now, self._settings.leeway)
        if not grants(claims.get(STREAMS_CLAIM), namespace, name):
            raise JwtRejected("wrong_stream", "the token does not grant this stream", status=403)
        return claims

    def _remembered(self, token: str) -> dict[str, Any] | None:
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._verified.get(digest)
        if hit is None or hit[0] <= self._monotonic():
            return None
        return hit[1]

    async def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise JwtRejected("malformed", "not a JSON Web Token") from None
        alg = header.get("alg")
        if alg not in self._settings.algorithms:
            raise JwtRejected("bad_algorithm", "the token's algorithm is not accepted")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        claims = self._decode(token, alg, kid, await self._keys.keys(kid))
        digest = hashlib.sha256(token.encode()).digest()
        self._verified[digest] = (self._monotonic() + VERIFIED_TTL, claims)
        self._verified.move_to_end(digest)
        while len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims

    def _decode(
        self, token: str, alg: str, kid: str | None, keys: Sequence[PublicKey]
    ) -> dict[str, Any]:
        family = _FAMILY.get(alg[:2])
        candidates = [
            k
            for k in keys
            if k.family == family and k.alg in (None, alg) and (kid is None or k.kid == kid)
        ]
        if not candidates:
            raise JwtRejected("unknown_key", "no key for this token")
        options: Any = {
            "require": ["exp", "aud"] + (["iss"] if self._settings.issuer else []),
            # Checked by _check_times with the time passed in (tests control it).
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        for candidate in candidates[:4]:  # a kid-less token is tried on a few keys only
            try:
                return jwt.decode(
                    token,
                    candidate.key,
                    algorithms=[alg],
                    audience=self._settings.audience,
                    issuer=self._settings.issuer,
                    options=options,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                raise JwtRejected("wrong_audience", "the token is for another audience") from None
            except jwt.InvalidIssuerError:
                raise JwtRejected("wrong_issuer", "the token is from another issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise JwtRejected("missing_claim", f"the token has no {exc.claim} claim") from None
            except (jwt.InvalidTokenError, jwt.InvalidKeyError, TypeError, ValueError):
                raise JwtRejected("malformed", "the token could not be read") from None
        raise JwtRejected("bad_signature", "the token's signature does not match")


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise JwtRejected("missing_claim", "the token's exp claim is not a number")
    if exp + leeway <= now:
        raise JwtRejected("expired", "the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if isinstance(nbf, bool) or not isinstance(nbf, (int, float)):
            raise JwtRejected("malformed", "the token's nbf claim is not a number")
        if nbf - leeway > now:
            raise JwtRejected("not_yet_valid", "the token is not valid yet")


def grants(claim: Any, namespace: str, name: str) -> bool:
    """True if the streams claim names namespace/name or namespace/*."""
    if not isinstance(claim, list):
        return False
    wanted = (f"{namespace}/{name}", f"{namespace}/*")
    return any(isinstance(item, str) and item in wanted for item in claim[:MAX_STREAMS_CLAIM])
