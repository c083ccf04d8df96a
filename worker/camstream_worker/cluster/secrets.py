"""Camera credentials and RTMP stream keys from Kubernetes Secrets.

Who calls this: the engine (through the SecretResolver protocol of
camstream_worker/secrets/base.py) when it opens a source or checks a publisher's
key. Values are cached briefly so a reconnect storm does not hammer the API,
and never logged: errors name the Secret and key, not the value.
"""

from __future__ import annotations

import base64
import binascii
import time

from camstream import kubeapi
from camstream.spec import SecretRef
from camstream_worker.errors import SecretError


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
        where = f"Secret {namespace}/{ref.name} key {ref.key}"
        try:
            secret = await self._api.get(kubeapi.secret_path(namespace, ref.name))
        except kubeapi.NotFound as exc:
            raise SecretError(f"{where}: the Secret does not exist") from exc
        except kubeapi.Forbidden as exc:
            raise SecretError(f"{where}: not allowed to read it") from exc
        except kubeapi.KubeError as exc:
            raise SecretError(f"{where}: could not be read ({type(exc).__name__})") from exc
        raw = (secret.get("data") or {}).get(ref.key)
        if raw is None:
            text = (secret.get("stringData") or {}).get(ref.key)
            if text is None:
                raise SecretError(f"{where}: no such key")
            value = str(text)
        else:
            try:
                value = base64.b64decode(raw).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise SecretError(f"{where}: not valid UTF-8 text") from exc
        self._cache[cache_key] = (time.monotonic(), value)
        return value
