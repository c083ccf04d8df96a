"""Camera credentials and RTMP stream keys from Kubernetes Secrets that opted in.

Who calls this: the engine (through the SecretResolver protocol of
camstream_worker/secrets/base.py) when it opens a source or checks a publisher's
key. A CameraStream's author need not be allowed to read Secrets, so what
the worker reads on the author's behalf is narrowed three times:

- the Secret is in the stream's own namespace (a reference has no namespace
  field; spec.py refuses names that are not Kubernetes names, and the API
  path builders keep any name inside its path segment);
- the Secret opted in, with the label camstream.io/usage=camera-credentials
  (wire.SECRET_USAGE_LABEL): a database password in the same namespace is
  never sent to a camera URL of the author's choosing;
- RBAC lets the worker `get` Secrets only where the chart's values (or the
  namespace's own admin, with a RoleBinding) allow it (helm/camstream/
  templates/rbac.yaml).

Values are cached briefly (`ttl`, 10 s) so a reconnect storm does not hammer
the API, and never logged: errors name the Secret, the key and what is
missing, never a value.

Without the API server the data path goes on (#14, docs/design-control-
plane-outages.md): a camera that reconnects while the API server is down,
or slow after etcd came back (seen: a key check of about 10 s), is checked
against the value last read, if it is at most STALE_LIMIT old. A check with
such a value waits REFRESH_WAIT for the API server; the read goes on in the
background and its answer replaces the value. Only an answer that the API
server could not give (no connection, a timeout, a 5xx or 429) keeps the old
value: a Secret deleted, no longer opted in or without the key is refused at
once, as before.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from typing import Any

from camstream import kubeapi, wire
from camstream.spec import SecretRef
from camstream_worker.errors import SecretError, SecretNotAllowed

log = logging.getLogger(__name__)

OPT_IN = f"{wire.SECRET_USAGE_LABEL}={wire.SECRET_USAGE_VALUE}"
STALE_LIMIT = 600.0  # seconds a value last read still serves while the API server cannot answer
REFRESH_WAIT = 1.0  # seconds a check that has such a value waits for the API server

CacheKey = tuple[str, str, str]


class _Unavailable(SecretError):
    """The API server gave no answer about the Secret (a last read value may stand in)."""


class KubeSecrets:
    def __init__(
        self,
        api: kubeapi.KubeApi,
        *,
        ttl: float = 10.0,
        stale_limit: float = STALE_LIMIT,
        refresh_wait: float = REFRESH_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._ttl = ttl
        self._stale_limit = stale_limit
        self._refresh_wait = refresh_wait
        self._clock = clock
        self._cache: dict[CacheKey, tuple[float, str]] = {}
        self._reading: dict[CacheKey, asyncio.Task[str]] = {}
        self.stale_answers = 0  # checks answered with a value the API server could not confirm
        self._stale_noted: set[CacheKey] = set()  # logged once until a read succeeds again

    async def get(self, namespace: str, ref: SecretRef) -> str:
        cache_key = (namespace, ref.name, ref.key)
        hit = self._cache.get(cache_key)
        age = None if hit is None else self._clock() - hit[0]
        if hit is not None and age is not None and age < self._ttl:
            return hit[1]
        reading = self._reading.get(cache_key)
        if reading is None:
            reading = asyncio.create_task(self._refresh(cache_key, namespace, ref))
            self._reading[cache_key] = reading
            reading.add_done_callback(lambda t: self._read_done(cache_key, t))
        if hit is None or age is None or age >= self._stale_limit:
            return await asyncio.shield(reading)  # nothing to stand in: the API's answer
        try:
            return await asyncio.wait_for(asyncio.shield(reading), self._refresh_wait)
        except (TimeoutError, _Unavailable) as exc:
            self.stale_answers += 1
            if cache_key not in self._stale_noted:
                self._stale_noted.add(cache_key)
                log.warning(
                    "Secret %s/%s: the API server did not answer (%s); using the value read "
                    "%.0f s ago (at most %.0f s old) until it does",
                    namespace,
                    ref.name,
                    type(exc).__name__,
                    age,
                    self._stale_limit,
                )
            return hit[1]

    async def _refresh(self, cache_key: CacheKey, namespace: str, ref: SecretRef) -> str:
        try:
            value = value_of(await self._read(namespace, ref.name), namespace, ref)
        except _Unavailable:
            raise
        except SecretError:
            self._cache.pop(cache_key, None)  # the API server said no: no old value stands
            raise
        self._cache[cache_key] = (self._clock(), value)
        self._stale_noted.discard(cache_key)
        return value

    def _read_done(self, cache_key: CacheKey, task: asyncio.Task[str]) -> None:
        if self._reading.get(cache_key) is task:
            del self._reading[cache_key]
        if not task.cancelled():
            task.exception()  # retrieved: a read nobody waited for is no error to report

    async def _read(self, namespace: str, name: str) -> dict[str, Any]:
        where = f"Secret {namespace}/{name}"
        try:
            path = kubeapi.secret_path(namespace, name)
        except kubeapi.BadName as exc:
            raise SecretError(f"{where}: not a Secret name") from exc
        try:
            return await self._api.get(path)
        except kubeapi.NotFound as exc:
            raise SecretError(f"{where}: the Secret does not exist") from exc
        except kubeapi.Forbidden as exc:
            raise SecretNotAllowed(
                f"{where}: the worker may not read Secrets in namespace {namespace}; "
                "grant it there (chart value rbac.workerSecrets.namespaces, or a RoleBinding "
                "to the chart's <release>-worker-secrets ClusterRole)"
            ) from exc
        except kubeapi.TransportError as exc:
            raise _Unavailable(f"{where}: could not be read ({type(exc).__name__})") from exc
        except kubeapi.ApiError as exc:
            unavailable = exc.status >= 500 or exc.status == 429
            kind = _Unavailable if unavailable else SecretError
            raise kind(f"{where}: could not be read ({type(exc).__name__} {exc.status})") from exc
        except kubeapi.KubeError as exc:
            raise _Unavailable(f"{where}: could not be read ({type(exc).__name__})") from exc


def value_of(secret: dict[str, Any], namespace: str, ref: SecretRef) -> str:
    """The text of `ref.key` in a Secret that opted in; SecretError naming what is wrong."""
    where = f"Secret {namespace}/{ref.name}"
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(wire.SECRET_USAGE_LABEL) != wire.SECRET_USAGE_VALUE:
        raise SecretNotAllowed(
            f"{where} has not opted in to camstream: label it {OPT_IN} to let "
            "CameraStreams of its namespace use it"
        )
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        text = (secret.get("stringData") or {}).get(ref.key)
        if text is None:
            raise SecretError(f"{where} has no key {ref.key!r}")
        return str(text)
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SecretError(f"{where} key {ref.key!r}: not valid UTF-8 text") from exc
