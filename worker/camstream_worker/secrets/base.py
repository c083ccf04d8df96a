"""Where a stream's Secret references are resolved: the one interface.

Who calls this: each source, at the start of every session (so a password
fixed in a Secret is picked up by the next attempt), and the RTMP source when a
publisher presents a stream key. Implemented by static.py (standalone mode:
environment, files, manifests), by the cluster agent's KubeSecrets
(cluster/secrets.py: Kubernetes Secrets) and, inside an engine process, by a
resolver that asks the parent (pool/child.py). An implementation raises
errors.SecretError naming the Secret and key, never the value.
"""

from __future__ import annotations

from typing import Protocol

from camstream.spec import SecretRef


class SecretResolver(Protocol):
    async def get(self, namespace: str, ref: SecretRef) -> str: ...
