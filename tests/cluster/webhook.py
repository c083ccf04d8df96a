"""The operator's admission webhook, registered for a test namespace.

Who calls this: tests/cluster/test_operator.py when an operator should label
streams at admission. The chart registers the webhook behind a Service; here
the node agent's pods have loopback addresses, which an EndpointSlice may
not hold ("may not be in the loopback range"), so the configuration names
the operator pod's address directly (clientConfig.url) and the serving
certificate, issued by the test CA, is for that address. Everything else is
as the chart sets it: CREATE of CameraStreams in the namespace, failure
policy Ignore, a 2 s timeout. (The chart's Service form is checked by the
API server in tests/cluster/test_chart_dryrun.py.)
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .conftest import Cluster
from .pki import issue_serving

PORT = 9443
PATH = "/partition-labels"  # the webhook id in operator/camstream_operator/main.py


def issue_cert(cluster: Cluster, address: str, directory: Path) -> Path:
    """Write tls.crt/tls.key for a webhook at `address`; return the folder."""
    issue_serving(cluster.plane.pki, directory, [], ips=[address])
    return directory


def install(cluster: Cluster, namespace: str, address: str) -> str:
    """The webhook configuration for the operator at `address`; returns its name."""
    name = f"camstream-{namespace}"
    ca = base64.b64encode(cluster.plane.pki.ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "partition-labels.camstream.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 2,
                "reinvocationPolicy": "Never",
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "rules": [
                    {
                        "apiGroups": ["camstream.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE"],
                        "resources": ["camerastreams"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": {"url": f"https://{address}:{PORT}{PATH}", "caBundle": ca},
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(config))
    return name


def remove(cluster: Cluster, name: str) -> None:
    cluster.kubectl("delete", "mutatingwebhookconfiguration", name, "--wait=false", check=False)
