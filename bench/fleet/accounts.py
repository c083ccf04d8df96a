"""ServiceAccount identities for the processes the bench runs.

Who calls this: scenario.py, for the operator (the chart's operator account),
a real worker (the chart's worker account) and the fake workers' heartbeats
(their own account, bound to the chart's worker Role). Each gets a token from
the TokenRequest API, as a kubelet would mount it, and a kubeconfig that
carries it: the processes act under the chart's RBAC and nothing more, and
the audit log names them `system:serviceaccount:<ns>:<account>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubeapi import KubeClient
from tests.cluster.kubeconfig import write_kubeconfig

TOKEN_SECONDS = 48 * 3600  # outlives a 100k run; no refresh needed


def username(namespace: str, account: str) -> str:
    """How the API server (and its audit log) names a ServiceAccount."""
    return f"system:serviceaccount:{namespace}:{account}"


def token(admin: KubeClient, namespace: str, account: str) -> str:
    answer = admin.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        },
    )
    return str(answer["status"]["token"])


def kubeconfig(plane: ControlPlane, admin: KubeClient, namespace: str, account: str) -> Path:
    """A kubeconfig for `account` with a fresh token, in the plane's work dir."""
    path = plane.work_dir / f"{account}.kubeconfig"
    return write_kubeconfig(
        path,
        plane.server,
        plane.ca_cert,
        user=account,
        token=token(admin, namespace, account),
        namespace=namespace,
    )


def bind_to_role(
    admin: KubeClient, namespace: str, account: str, role: str
) -> list[dict[str, Any]]:
    """Create `account` and bind it to the existing Role `role` in `namespace`."""
    sa = admin.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    binding = admin.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
    return [sa, binding]
