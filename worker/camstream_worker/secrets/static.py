"""Secrets for standalone mode: the environment, a folder of files, or Secret manifests.

Who calls this: standalone mode (app/standalone.py) builds one `StaticSecrets`
for the worker; sources and the RTMP stream key check ask it through the
`SecretResolver` interface (base.py). Values are returned to the caller only;
errors name the Secret and key, never the value.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from camstream.spec import SecretRef
from camstream_worker.errors import SecretError


class StaticSecrets:
    """Secrets for standalone mode, looked up in this order:

    1. the environment: key `password` of Secret `cam1` in namespace `default`
       is CAMSTREAM_SECRET_DEFAULT_CAM1_PASSWORD (non-alphanumerics → _);
    2. a secrets folder laid out like mounted Secrets:
       <secrets_dir>/<namespace>/<secret>/<key> (one file per key);
    3. `kind: Secret` manifests given with the streams.
    """

    def __init__(
        self,
        manifests: Iterable[Mapping[str, Any]] = (),
        default_namespace: str = "default",
        environ: Mapping[str, str] | None = None,
        secrets_dir: Path | None = None,
    ) -> None:
        self._values: dict[tuple[str, str, str], str] = {}
        self._environ = os.environ if environ is None else environ
        self._dir = secrets_dir
        for manifest in manifests:
            meta = manifest.get("metadata") or {}
            namespace = str(meta.get("namespace") or default_namespace)
            name = str(meta.get("name"))
            for key, value in (manifest.get("stringData") or {}).items():
                self._values[(namespace, name, key)] = str(value)
            for key, value in (manifest.get("data") or {}).items():
                self._values[(namespace, name, key)] = base64.b64decode(value).decode()

    async def get(self, namespace: str, ref: SecretRef) -> str:
        variable = env_name(namespace, ref)
        if variable in self._environ:
            return self._environ[variable]
        if self._dir is not None:
            path = self._dir / namespace / ref.name / ref.key
            if path.is_file():
                return path.read_text().rstrip("\n")
        try:
            return self._values[(namespace, ref.name, ref.key)]
        except KeyError:
            raise SecretError(
                f"secret {namespace}/{ref.name} has no key {ref.key!r} "
                f"(nor is {variable} set, nor a file for it in the secrets folder)"
            ) from None


def env_name(namespace: str, ref: SecretRef) -> str:
    raw = f"CAMSTREAM_SECRET_{namespace}_{ref.name}_{ref.key}"
    return re.sub(r"[^A-Za-z0-9]", "_", raw).upper()
