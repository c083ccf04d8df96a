"""Write kubeconfig files for the test control plane's identities.

Called by controlplane.py (admin, controller-manager, scheduler, node agent)
and nodeagent.py (one per pod, authenticating with the pod's ServiceAccount
token). Paths are absolute so a kubeconfig works from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

__all__ = ["write_kubeconfig"]


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    *,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """Write a one-cluster, one-user kubeconfig; exactly one of cert+key or token."""
    if (client_cert is None) == (token is None):
        raise ValueError("give either a client certificate or a token")
    credentials: dict[str, str] = (
        {"token": token}
        if token is not None
        else {"client-certificate": str(client_cert), "client-key": str(client_key)}
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "camstream-test",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {
                "name": "camstream-test",
                "context": {"cluster": "camstream-test", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "camstream-test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tokens are credentials: write the file private from its first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return path
