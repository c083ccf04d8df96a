"""Who may watch a stream, and who may see the admin surface: the check before any byte.

Who calls this: server.py, for every request that reads one stream (player
page, playlists, segments, init segments, thumbnail, the stream's JSON
status) and for the admin surface (index page, /api/streams, /metrics).
In cluster mode the worker that serves the bytes checks: a worker that
forwards a request to the stream's owner (proxy.py) passes the viewer's
token along and lets the owner decide, because the owner is the one that
runs the stream's spec and reads its namespace's key; a worker that serves
its own copy during a handoff checks with its own copy of the spec.

A stream's mode is its `spec.playback.auth.mode`, else the worker's default
(`--playback-auth`); streams this worker does not know get the default too,
so with a protected default an unknown name answers 401 like a real one and
names cannot be probed without a token.

Recordings (a stream's past: ranges, VOD playlists, byte ranges, clips) obey
the same mode as the live stream. They outlive the stream, so a request for
the past of a stream this worker does not know (deleted, or not yet applied
here) never falls open: with a public default it is `signed`, answered only
to a token made with the namespace's default key.

    none     anyone who reaches the worker (refused with --require-playback-auth)
    signed   a token made by camstream.playback_tokens.sign with the stream's key: a Secret
             in the stream's own namespace (spec.playback.auth.signingKeySecretRef,
             default camstream-playback/signingKey)
    jwt      a JWT from the trusted issuer whose streams claim names the stream

The token comes in `?token=` (players that cannot set headers; served
playlists then repeat it on their URIs) or in `Authorization: Bearer`.

Refusals, all JSON with a fixed `reason` word and no data of the stream:
    401  no token, a malformed, forged or expired one (WWW-Authenticate says which)
    403  a genuine token for another stream; a public stream on a worker that
         requires auth
    503  the stream's key cannot be had (missing Secret, key too short, no JWT keys)

Keys are cached KEY_TTL seconds (failures NEGATIVE_TTL), one lookup at a
time per key, at most KEY_CACHE entries: a flood of requests costs no flood
of Secret reads.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from camstream import playback_tokens
from camstream.spec import (
    DEFAULT_SIGNING_KEY,
    DEFAULT_SIGNING_SECRET,
    PlaybackMode,
    SecretRef,
    StreamKey,
    StreamSpec,
)
from camstream_worker.errors import SecretError
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.servers.http import viewer_jwt
from camstream_worker.servers.http.settings import HttpSettings

log = logging.getLogger(__name__)

KEY_TTL = 10.0
NEGATIVE_TTL = 5.0
KEY_CACHE = 4096
REALM = "camstream"


class Refused(Exception):
    """A request that gets no data: `status`, a fixed `reason` word and a message."""

    def __init__(self, status: int, reason: str, message: str, *, challenge: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.challenge = challenge  # WWW-Authenticate, for 401 and 403


@dataclass(frozen=True, slots=True)
class Access:
    """A request that may go ahead. `protected`: the stream asked who the viewer
    is (so no `*` CORS, no public caching); `carry`: the query token to repeat
    on the URIs of a served playlist or page."""

    protected: bool
    carry: str | None = None


PUBLIC = Access(protected=False)


class SpecLookup(Protocol):
    def spec(self, key: StreamKey) -> StreamSpec | None: ...


class PlaybackAccess:
    def __init__(
        self,
        settings: HttpSettings,
        *,
        specs: SpecLookup | None = None,
        secrets: SecretResolver | None = None,
        jwt: viewer_jwt.JwtVerifier | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._specs = specs
        self._secrets = secrets
        self._jwt = jwt
        self._clock = clock
        self._monotonic = monotonic
        self._keys: OrderedDict[tuple[str, str, str], tuple[float, bytes | Refused]] = OrderedDict()
        self._pending: dict[tuple[str, str, str], asyncio.Future[bytes]] = {}
        # Refusals by reason word, for /metrics (a bounded set of labels).
        self.refused: Counter[str] = Counter()

    def mode_of(self, key: StreamKey, *, past: bool = False) -> PlaybackMode:
        spec = self._specs.spec(key) if self._specs is not None else None
        mode = spec.playback.auth.mode if spec is not None else None
        if spec is None and past and self._settings.default_mode == "none":
            # The recordings of a stream nobody here knows: perhaps a
            # protected stream since deleted. Never public by default.
            return "signed"
        return mode or self._settings.default_mode

    async def check(
        self,
        key: StreamKey,
        *,
        query_token: str | None,
        authorization: str | None,
        past: bool = False,
    ) -> Access:
        """An Access for a request of stream `key` (`past`: of its recordings), or Refused."""
        try:
            return await self._check(key, query_token, authorization, past)
        except Refused as refused:
            self.refused[refused.reason] += 1
            raise

    async def _check(
        self, key: StreamKey, query_token: str | None, authorization: str | None, past: bool
    ) -> Access:
        mode = self.mode_of(key, past=past)
        if mode == "none":
            if self._settings.require_auth:
                raise Refused(
                    403,
                    "auth_required",
                    "this worker serves only streams that ask their viewers for a token "
                    "(spec.playback.auth.mode)",
                )
            return PUBLIC
        token, from_query = _token_of(query_token, authorization)
        if token is None:
            raise Refused(
                401,
                "token_missing",
                "this stream asks for a viewer token: add ?token=... to the URL "
                "or send Authorization: Bearer ...",
                challenge=f'Bearer realm="{REALM}"',
            )
        now = self._clock()
        if mode == "signed":
            secret = await self._signing_key(key)
            try:
                playback_tokens.verify(
                    secret, token, namespace=key.namespace, name=key.name, now=now
                )
            except playback_tokens.TokenError as exc:
                raise _token_refusal(exc.status, exc.code, str(exc)) from None
        else:
            if self._jwt is None:
                raise Refused(503, "auth_unavailable", "this worker has no keys for viewer JWTs")
            try:
                await self._jwt.verify(token, namespace=key.namespace, name=key.name, now=now)
            except viewer_jwt.JwtRejected as exc:
                raise _token_refusal(exc.status, exc.code, str(exc)) from None
            except viewer_jwt.KeysUnavailable:
                raise Refused(
                    503, "auth_unavailable", "the keys for viewer JWTs are not available"
                ) from None
        return Access(protected=True, carry=token if from_query else None)

    # -- signing keys, cached

    def _ref_of(self, key: StreamKey) -> SecretRef:
        spec = self._specs.spec(key) if self._specs is not None else None
        if spec is not None:
            return spec.playback.auth.signing_key
        return SecretRef(DEFAULT_SIGNING_SECRET, DEFAULT_SIGNING_KEY)

    async def _signing_key(self, key: StreamKey) -> bytes:
        ref = self._ref_of(key)
        cache_key = (key.namespace, ref.name, ref.key)
        hit = self._keys.get(cache_key)
        if hit is not None and self._monotonic() < hit[0]:
            if isinstance(hit[1], Refused):
                # A fresh traceback each time: re-raising one instance would
                # grow its traceback with every request.
                raise hit[1].with_traceback(None)
            return hit[1]
        task = self._pending.get(cache_key)
        if task is None:
            # One lookup per key however many requests wait for it; a task of
            # its own, so a viewer who hangs up does not cancel it for the rest.
            task = asyncio.ensure_future(self._lookup(cache_key, key.namespace, ref))
            self._pending[cache_key] = task
            task.add_done_callback(lambda _: self._pending.pop(cache_key, None))
        return await asyncio.shield(task)

    async def _lookup(
        self, cache_key: tuple[str, str, str], namespace: str, ref: SecretRef
    ) -> bytes:
        where = f"Secret {namespace}/{ref.name} key {ref.key}"
        try:
            if self._secrets is None:
                raise Refused(503, "auth_unavailable", "this worker reads no Secrets")
            try:
                value = playback_tokens.signing_key(await self._secrets.get(namespace, ref))
            except SecretError as exc:
                # SecretError names the Secret and key, never the value.
                log.warning("playback signing key unavailable: %s", exc)
                raise Refused(
                    503, "auth_unavailable", f"the stream's signing key ({where}) is not available"
                ) from None
            except playback_tokens.KeyTooShort as exc:
                log.warning("playback signing key unusable: %s: %s", where, exc)
                raise Refused(
                    503, "auth_unavailable", f"the stream's signing key ({where}) is too short"
                ) from None
        except Refused as refused:
            self._remember(cache_key, self._monotonic() + NEGATIVE_TTL, refused)
            raise
        self._remember(cache_key, self._monotonic() + KEY_TTL, value)
        return value

    def _remember(
        self, cache_key: tuple[str, str, str], until: float, value: bytes | Refused
    ) -> None:
        self._keys[cache_key] = (until, value)
        self._keys.move_to_end(cache_key)
        while len(self._keys) > KEY_CACHE:
            self._keys.popitem(last=False)


def admin_allowed(token: str | None, authorization: str | None) -> bool:
    """The admin surface: open without a configured token, else Bearer <token>."""
    if token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


ADMIN_REFUSAL = Refused(
    401,
    "admin_token",
    "this needs the worker's admin token: Authorization: Bearer ...",
    challenge=f'Bearer realm="{REALM}-admin"',
)


def _token_of(query_token: str | None, authorization: str | None) -> tuple[str | None, bool]:
    """The presented token and whether it came in the URL. The header wins:
    a player that sets it needs no rewritten playlists."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    if query_token:
        return query_token, True
    return None, False


def _token_refusal(status: int, code: str, message: str) -> Refused:
    if status == 403:
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
    else:
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
    return Refused(status, code, message, challenge=challenge)
