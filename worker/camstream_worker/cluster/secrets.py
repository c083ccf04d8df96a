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

Values are cached briefly so a reconnect storm does not hammer the API, and
never logged: errors name the Secret, the key and what is missing, never a
value.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from camstream import kubeapi, wire
from camstream.spec import SecretRef
from camstream_worker.errors import SecretError, SecretNotAllowed

OPT_IN = f"{wire.SECRET_USAGE_LABEL}={wire.SECRET_USAGE_VALUE}"


class KubeSecrets:
    def __init__(self, api: kubeapi.KubeApi, *, ttl: float = 10.0) -> None:
        self._api = api
        self._ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, str]] = {}

    async def get(self, namespace: str, ref: SecretRef) -> str:
        cache_key = (namespace, ref.name, ref.key)
        hit = self._cache.get(cache_key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        value = value_of(await self._read(namespace, ref.name), namespace, ref)
        self._cache[cache_key] = (time.monotonic(), value)
        return value

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
        except kubeapi.KubeError as exc:
            raise SecretError(f"{where}: could not be read ({type(exc).__name__})") from exc


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
