"""The operator's admission webhook for a fleet run: a certificate and its registration.

Who calls this: live.py (`certificate`, once per run) and phases.py
(`register`, for the replica that serves creates). The operator runs as a
local process on 127.0.0.1, so the webhook is registered by URL with a
certificate for that address, issued by the test cluster's CA (the chart
registers the same webhook behind a Service; here there is no Service to
route to). Failure policy Ignore, as in the chart: a create never waits on
the operator.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.cluster.controlplane import ControlPlane
from tests.cluster.pki import issue_serving

ADDRESS = "127.0.0.1"
NAME = "camstream-fleet-partition-labels"
PATH = "/partition-labels"  # operator/camstream_operator/main.py's WEBHOOK_ID


def certificate(plane: ControlPlane, directory: Path) -> Path:
    issue_serving(plane.pki, directory, [], ips=[ADDRESS])
    return directory


def register(plane: ControlPlane, port: int) -> None:
    """Point the API server's CameraStream creates at the operator serving on `port`."""
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [
            {
                "name": "partition-labels.camstream.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 2,
                "rules": [
                    {
                        "apiGroups": ["camstream.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE"],
                        "resources": ["camerastreams"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": {
                    "url": f"https://{ADDRESS}:{port}{PATH}",
                    "caBundle": base64.b64encode(plane.pki.ca_cert.read_bytes()).decode(),
                },
            }
        ],
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(config))
