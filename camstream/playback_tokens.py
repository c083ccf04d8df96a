"""Signed playback URLs: the token format that the signer and the worker spell alike.

Who calls this: `camstream sign` (and through it the kubectl plugin's `open`)
makes tokens; the worker's HTTP server (servers/http/access.py) checks them
on every request for a stream whose `spec.playback.auth.mode` is `signed`.
Pure: bytes and strings in, values or `TokenError` out; time is passed in.

A token grants viewing of one stream, or of every stream of one namespace
whose signing key is the same, until an instant:

    token   = "v1." + b64url(payload) + "." + b64url(mac)
    payload = "<namespace>/<name, or * for the whole namespace>/<expires, unix seconds>"
    mac     = HMAC-SHA256(key, "camstream-playback-v1\\n" + payload)

The payload is readable (it says what the URL grants and until when), but
only the key's holder can make one: the MAC covers every byte of it, and a
fixed context string keeps a MAC made for anything else from passing.
Checks run MAC first (nothing of the payload is believed before that), then
the expiry, then the scope; so a token for another stream under the same key
is recognised as such (403) while a forged or truncated one is only
"invalid" (401).

The key is the text of a Secret value, used as its UTF-8 bytes; it must
hold at least MIN_KEY_BYTES (e.g. `openssl rand -base64 32`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

VERSION = "v1"
_CONTEXT = b"camstream-playback-v1\n"
MIN_KEY_BYTES = 32
# Far above a real token (about 120 characters): anything longer is refused
# before it is decoded.
MAX_TOKEN_CHARS = 512
WHOLE_NAMESPACE = "*"
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_B64_RE = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A token that grants nothing here. `code` is a short fixed word (for
    metrics and the JSON error); the message never quotes the token."""

    code = "invalid"
    status = 401


class TokenMalformed(TokenError):
    code = "malformed"


class TokenForged(TokenError):
    """The MAC does not match: tampered, truncated or made with another key."""

    code = "bad_signature"


class TokenExpired(TokenError):
    code = "expired"


class TokenWrongStream(TokenError):
    """A genuine token, for another stream or namespace."""

    code = "wrong_stream"
    status = 403


class KeyTooShort(ValueError):
    """A signing key with fewer than MIN_KEY_BYTES bytes."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token allows: `name` None means every stream of `namespace`."""

    namespace: str
    name: str | None
    expires: int  # unix seconds

    def covers(self, namespace: str, name: str) -> bool:
        return self.namespace == namespace and self.name in (None, name)

    def payload(self) -> str:
        return f"{self.namespace}/{self.name or WHOLE_NAMESPACE}/{self.expires}"


def signing_key(text: str) -> bytes:
    """The key bytes of a Secret value, or KeyTooShort (the message holds no key material)."""
    key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise KeyTooShort(
            f"the signing key has {len(key)} bytes, at least {MIN_KEY_BYTES} are needed "
            "(e.g. openssl rand -base64 32)"
        )
    return key


def sign(key: bytes, grant: Grant) -> str:
    """A token for `grant`. Raises ValueError for names that are not Kubernetes names."""
    if not _NAMESPACE_RE.fullmatch(grant.namespace):
        raise ValueError("the namespace is not a Kubernetes namespace name")
    if grant.name is not None and not _NAME_RE.fullmatch(grant.name):
        raise ValueError("the stream name is not a Kubernetes object name")
    if grant.expires < 0:
        raise ValueError("the expiry is before 1970")
    payload = grant.payload().encode()
    return f"{VERSION}.{_b64(payload)}.{_b64(_mac(key, payload))}"


def verify(key: bytes, token: str, *, namespace: str, name: str, now: float) -> Grant:
    """The grant of `token` if it lets its holder watch namespace/name at `now`."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenMalformed("the token is too long")
    version, _, rest = token.partition(".")
    encoded_payload, _, encoded_mac = rest.partition(".")
    if version != VERSION or not encoded_payload or not encoded_mac:
        raise TokenMalformed("not a camstream playback token")
    payload = _unb64(encoded_payload)
    mac = _unb64(encoded_mac)
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise TokenForged("the token's signature does not match")
    grant = _parse_payload(payload)
    if grant.expires <= now:
        raise TokenExpired("the token has expired")
    if not grant.covers(namespace, name):
        raise TokenWrongStream("the token is for another stream")
    return grant


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64_RE.fullmatch(text):
        raise TokenMalformed("not a camstream playback token")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenMalformed("not a camstream playback token") from None
    if _b64(data) != text:
        # Only the canonical spelling: one token, one string (the unused low
        # bits of the last character cannot vary).
        raise TokenMalformed("not a camstream playback token")
    return data


def _parse_payload(payload: bytes) -> Grant:
    """Only reached with a valid MAC: a bad payload means a signer's bug, still refused."""
    try:
        namespace, name, expires = payload.decode("ascii").split("/")
        seconds = int(expires)
    except (UnicodeDecodeError, ValueError):
        raise TokenMalformed("not a camstream playback token") from None
    return Grant(namespace, None if name == WHOLE_NAMESPACE else name, seconds)
