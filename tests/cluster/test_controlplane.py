"""The test bed itself: a real apiserver with RBAC, real controllers, and a node
agent that runs pods as processes with their real identities.

These tests are what the end-to-end suite stands on: if a StatefulSet does not
become Ready here, or a scale-down skips SIGTERM, every churn scenario's
figures would be meaningless.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from .conftest import Cluster
from .kubeconfig import write_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

PY = sys.executable


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def _statefulset(
    name: str,
    command: list[str],
    *,
    replicas: int = 2,
    grace: int = 30,
    probe_port: int | None = 8080,
    service_account: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "ignored.invalid/by-the-node-agent",
        "command": command,
        "ports": [{"name": "http", "containerPort": 8080}],
    }
    if probe_port is not None:
        container["readinessProbe"] = {
            "httpGet": {"path": "/", "port": "http"},
            "periodSeconds": 1,
            "timeoutSeconds": 5,
        }
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": grace}
    if service_account:
        spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


HTTP_SERVER = [PY, "-m", "http.server", "--bind", "$(POD_IP)", "8080"]

# A server that, on SIGTERM, logs it, keeps serving for `delay` seconds, then exits:
# the shape of a worker handing its streams off before leaving.
GRACEFUL_SERVER = textwrap.dedent(
    """
    import http.server, os, signal, sys, threading, time
    delay = float(sys.argv[1])
    server = http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080),
                                             http.server.SimpleHTTPRequestHandler)
    def on_term(signum, frame):
        print(f"SIGTERM at {time.time():.3f}", flush=True)
        def leave():
            time.sleep(delay)
            print(f"exiting at {time.time():.3f}", flush=True)
            os._exit(0)
        threading.Thread(target=leave, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)
    server.serve_forever()
    """
)


def _ready_replicas(cluster: Cluster, namespace: str, name: str) -> int:
    sts = cluster.kubectl_json("get", "statefulset", name, "-n", namespace)
    return int(sts.get("status", {}).get("readyReplicas", 0))


def _pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_apiserver_is_the_pinned_release_and_ready(control_plane: Cluster) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.35.4"
    node = control_plane.kubectl_json("get", "node", control_plane.plane.node_name)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    # Loopback only: the apiserver URL and every component's bind address.
    assert control_plane.plane.server.startswith("https://127.0.0.1:")


def test_kubectl_apply_configmap(control_plane: Cluster, namespace: str) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ring"},
        "data": {"partitions": "64"},
    }
    _apply(control_plane, namespace, manifest)
    got = control_plane.kubectl_json("get", "configmap", "ring", "-n", namespace)
    assert got["data"] == {"partitions": "64"}


def test_statefulset_becomes_ready_with_distinct_routable_pod_ips(
    control_plane: Cluster, namespace: str
) -> None:
    _apply(control_plane, namespace, _statefulset("web", HTTP_SERVER, replicas=2))
    control_plane.wait_for(
        lambda: _ready_replicas(control_plane, namespace, "web") == 2,
        timeout=90,
        what="2 ready replicas of statefulset web",
    )
    pods = [_pod(control_plane, namespace, f"web-{i}") for i in range(2)]
    ips = [p["status"]["podIP"] for p in pods if p]
    assert len(set(ips)) == 2, ips
    for ip in ips:
        assert ip.startswith("127.0.")
        # Real routing: the test reaches each pod's own server on its own address.
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=10) as response:
            assert response.status == 200
    for pod in pods:
        assert pod is not None
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] is True and status["restartCount"] == 0
        assert pod["spec"]["nodeName"] == control_plane.plane.node_name  # bound by kube-scheduler


def test_deployment_becomes_available(control_plane: Cluster, namespace: str) -> None:
    manifest = _statefulset("op", HTTP_SERVER, replicas=1)
    manifest["kind"] = "Deployment"
    del manifest["spec"]["serviceName"]
    _apply(control_plane, namespace, manifest)
    control_plane.wait_for(
        lambda: (
            control_plane.kubectl_json("get", "deployment", "op", "-n", namespace)
            .get("status", {})
            .get("availableReplicas")
            == 1
        ),
        timeout=90,
        what="deployment op available",
    )


def test_scale_down_sends_sigterm_and_waits_for_graceful_exit(
    control_plane: Cluster, namespace: str
) -> None:
    command = [PY, "-c", GRACEFUL_SERVER, "3"]
    _apply(control_plane, namespace, _statefulset("leaver", command, replicas=2, grace=30))
    control_plane.wait_for(
        lambda: _ready_replicas(control_plane, namespace, "leaver") == 2,
        timeout=90,
        what="2 ready replicas",
    )
    pid = control_plane.agent.pid("leaver-1", namespace)
    assert pid is not None
    scaled_at = time.time()
    control_plane.kubectl("scale", "statefulset", "leaver", "--replicas=1", "-n", namespace)
    control_plane.wait_for(
        lambda: _pod(control_plane, namespace, "leaver-1") is None,
        timeout=60,
        what="leaver-1 deleted",
    )
    gone_at = time.time()
    log = control_plane.agent.pod_log("leaver-1", namespace).read_text()
    assert "SIGTERM at" in log, log
    term = float(log.split("SIGTERM at ")[1].split()[0])
    exited = float(log.split("exiting at ")[1].split()[0])
    # The process chose its exit time (3 s after SIGTERM), not a SIGKILL.
    assert 2.9 <= exited - term < 10, (term, exited)
    assert gone_at - scaled_at >= 3.0
    assert _pod(control_plane, namespace, "leaver-0") is not None  # ordinal 0 stays


def test_grace_period_ends_with_sigkill(control_plane: Cluster, namespace: str) -> None:
    # Ignores SIGTERM entirely: only the grace period's SIGKILL can end it.
    stubborn = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('ignoring SIGTERM', flush=True))\n"
        "time.sleep(3600)\n"
    )
    _apply(
        control_plane,
        namespace,
        _statefulset("stubborn", [PY, "-c", stubborn], replicas=1, grace=2, probe_port=None),
    )
    control_plane.wait_for(
        lambda: _ready_replicas(control_plane, namespace, "stubborn") == 1,
        timeout=90,
        what="stubborn-0 ready",
    )
    old_uid = (_pod(control_plane, namespace, "stubborn-0") or {})["metadata"]["uid"]
    old_pid = control_plane.agent.pid("stubborn-0", namespace)
    assert old_pid is not None
    started = time.monotonic()
    control_plane.kubectl("delete", "pod", "stubborn-0", "-n", namespace, "--wait=false")
    log_path = control_plane.agent.pod_log("stubborn-0", namespace)
    control_plane.wait_for(
        lambda: "ignoring SIGTERM" in log_path.read_text(), timeout=30, what="SIGTERM delivered"
    )

    def old_pod_gone() -> bool:
        pod = _pod(control_plane, namespace, "stubborn-0")
        return pod is None or pod["metadata"]["uid"] != old_uid

    control_plane.wait_for(old_pod_gone, timeout=30, interval=0.1, what="old stubborn-0 gone")
    elapsed = time.monotonic() - started
    # Not before the 2 s grace period, and not much after it.
    assert 2.0 <= elapsed < 15, elapsed
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"


def test_crashed_pod_is_restarted_with_a_restart_count(
    control_plane: Cluster, namespace: str
) -> None:
    _apply(control_plane, namespace, _statefulset("crashy", HTTP_SERVER, replicas=1))
    control_plane.wait_for(
        lambda: _ready_replicas(control_plane, namespace, "crashy") == 1, timeout=90, what="ready"
    )
    old_pid = control_plane.agent.kill("crashy-0", namespace)

    def restarted_and_ready() -> bool:
        pod = _pod(control_plane, namespace, "crashy-0")
        if pod is None:
            return False
        status = pod["status"]["containerStatuses"][0]
        return bool(status["restartCount"] == 1 and status["ready"])

    control_plane.wait_for(restarted_and_ready, timeout=60, what="crashy-0 restarted and ready")
    pod = _pod(control_plane, namespace, "crashy-0")
    assert pod is not None
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137  # 128 + SIGKILL, as a container runtime reports it
    assert control_plane.agent.pid("crashy-0", namespace) not in (None, old_pid)


def test_failing_liveness_probe_restarts_the_container(
    control_plane: Cluster, namespace: str
) -> None:
    manifest = _statefulset("numb", HTTP_SERVER, replicas=1, grace=1)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    # Nothing listens on 9: the probe fails from the start, as a hung process's would.
    container["livenessProbe"] = {
        "tcpSocket": {"port": 9},
        "periodSeconds": 1,
        "failureThreshold": 2,
        "timeoutSeconds": 1,
    }
    _apply(control_plane, namespace, manifest)

    def restarted() -> bool:
        pod = _pod(control_plane, namespace, "numb-0")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0)) >= 1

    control_plane.wait_for(restarted, timeout=60, what="numb-0 restarted by its liveness probe")
    log = control_plane.agent.pod_log("numb-0", namespace).read_text()
    assert log.count("=== ") >= 2, log  # a second start in the pod's log


# Lists pods with the pod's own credentials (its KUBECONFIG) and prints the HTTP status.
WHOAMI = textwrap.dedent(
    """
    import os, ssl, sys, urllib.request, urllib.error, yaml
    cfg = yaml.safe_load(open(os.environ["KUBECONFIG"]))
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    url = f"{cluster['server']}/api/v1/namespaces/{os.environ['POD_NAMESPACE']}/pods"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + user["token"]})
    try:
        code = urllib.request.urlopen(req, context=ctx, timeout=10).status
    except urllib.error.HTTPError as exc:
        code = exc.code
    print(f"pods list status {code}", flush=True)
    """
)


def _run_once(cluster: Cluster, namespace: str, name: str, account: str) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "ignored", "command": [PY, "-c", WHOAMI]}],
        },
    }
    _apply(cluster, namespace, pod)
    cluster.wait_for(
        lambda: (
            (_pod(cluster, namespace, name) or {}).get("status", {}).get("phase") == "Succeeded"
        ),
        timeout=60,
        what=f"pod {name} succeeded",
    )
    return cluster.agent.pod_log(name, namespace).read_text()


def test_rbac_is_enforced_for_pod_service_account_tokens(
    control_plane: Cluster, namespace: str
) -> None:
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    denied = _run_once(control_plane, namespace, "denied", "nobody")
    assert "pods list status 403" in denied, denied

    # The same identity is allowed once RBAC says so: the 403 was RBAC, not a broken token.
    control_plane.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    control_plane.kubectl(
        "create", "rolebinding", "nobody-reads", "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody", "-n", namespace,
    )  # fmt: skip
    allowed = _run_once(control_plane, namespace, "allowed", "nobody")
    assert "pods list status 200" in allowed, allowed


def test_kubectl_with_a_plain_service_account_token_is_forbidden(
    control_plane: Cluster, namespace: str, tmp_path: Path
) -> None:
    control_plane.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    token = control_plane.kubectl("create", "token", "viewer", "-n", namespace).stdout.strip()
    # A kubeconfig with the token only: the admin's client certificate must not ride along.
    config = write_kubeconfig(
        tmp_path / "viewer.kubeconfig",
        control_plane.plane.server,
        control_plane.plane.ca_cert,
        user="viewer",
        token=token,
    )
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={config}", "get", "secrets", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "forbidden" in result.stderr.lower(), result.stderr
    assert f"system:serviceaccount:{namespace}:viewer" in result.stderr
