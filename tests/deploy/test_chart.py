"""The Helm chart, linted and rendered by the real helm CLI.

Covers issue 5's chart contract: the objects each documented setup renders,
the names and arguments the operator and workers rely on, least-privilege
RBAC, storage/Service/Ingress variants, monitoring objects, the CRD's single
source, and values.schema.json rejecting bad values with a readable message.
The server-side dry-run of the same manifests is tests/cluster/test_chart_dryrun.py.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from camstream_worker.sources.policy import DEFAULT_DENIED_CIDRS

from .conftest import (
    CHART,
    EXAMPLES,
    NAMESPACE,
    RELEASE,
    REPO,
    Helm,
    by_kind,
    clean_stderr,
    container,
    one,
)

OPERATOR = f"{RELEASE}-operator"
WORKER = f"{RELEASE}-worker"
EDGE = f"{RELEASE}-edge"
RING = f"{RELEASE}-ring"
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
}

DEFAULT_KINDS = {
    "ServiceAccount": 3,  # operator, worker, edge
    "ClusterRole": 3,  # operator, worker, and the worker's Secrets (bound nowhere by default)
    "ClusterRoleBinding": 2,
    "Role": 3,  # release namespace: operator, worker, edge (the ring ConfigMap only)
    "RoleBinding": 3,
    "Deployment": 2,  # operator, ingest edge
    "StatefulSet": 1,
    "Service": 5,  # operator metrics, operator webhook, worker headless, playback, rtmp
    "PodDisruptionBudget": 3,  # operator, workers, edge
    "ConfigMap": 1,  # Grafana dashboard (the ring ConfigMap is the operator's)
    "Secret": 3,  # the webhook's serving certificate, the edge token, the workers' peer token
    "MutatingWebhookConfiguration": 1,
}


def kinds(objects: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return counts


# -- lint and render ---------------------------------------------------------


def test_lint_strict_defaults(helm: Helm) -> None:
    result = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_lint_strict_each_example(helm: Helm, example: Path) -> None:
    result = helm.run("lint", "--strict", str(CHART), "--values", str(example))
    assert "0 chart(s) failed" in result.stdout


def test_documented_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} == {"small-site", "large-fleet", "rtmp-edge", "recording-s3"}
    readme = (CHART / "README.md").read_text()
    for example in EXAMPLES:
        assert f"examples/{example.name}" in readme, f"{example.name} not documented"


def test_defaults_render_expected_kinds(helm: Helm) -> None:
    objects = helm.render()
    assert kinds(objects) == DEFAULT_KINDS


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "small-site",
            # watchNamespaces [cameras]: Roles there instead of ClusterRoles, the
            # Secrets' ClusterRole bound there only; no RTMP, so no edge; an
            # egress policy.
            {
                **DEFAULT_KINDS,
                "ServiceAccount": 2,
                "ClusterRole": 1,
                "ClusterRoleBinding": 0,
                "Role": 4,
                "RoleBinding": 5,
                "Deployment": 1,
                "PodDisruptionBudget": 2,
                "Secret": 2,
                "Service": 4,
                "Ingress": 1,
                "NetworkPolicy": 1,
            },
        ),
        (
            "large-fleet",
            {
                **DEFAULT_KINDS,
                "Ingress": 1,
                "HorizontalPodAutoscaler": 1,
                "ServiceMonitor": 2,
                "PodMonitor": 1,  # the ingest edge
                "PrometheusRule": 1,
            },
        ),
        ("rtmp-edge", {**DEFAULT_KINDS, "Ingress": 1}),
        (
            "recording-s3",
            {**DEFAULT_KINDS, "ServiceMonitor": 2, "PodMonitor": 1, "PrometheusRule": 1},
        ),
    ],
)
def test_examples_render_expected_kinds(helm: Helm, example: str, expected: dict[str, int]) -> None:
    objects = helm.render([CHART / "examples" / f"{example}.yaml"])
    assert kinds(objects) == {k: v for k, v in expected.items() if v}


@pytest.mark.parametrize("example", [None, *EXAMPLES], ids=lambda p: p.stem if p else "defaults")
def test_every_object_is_well_formed(helm: Helm, example: Path | None) -> None:
    objects = helm.render([example] if example else [])
    names: set[tuple[str, str, str]] = set()
    for obj in objects:
        meta = obj["metadata"]
        assert obj["apiVersion"] and obj["kind"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace"), f"{obj['kind']} {meta['name']} has no namespace"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in names, f"duplicate {key}"
        names.add(key)


# -- contract: names, arguments, probes ---------------------------------------


def _args_map(args: list[str]) -> dict[str, str]:
    assert len(args) % 2 == 0, args
    return dict(zip(args[::2], args[1::2], strict=True))


def test_operator_deployment_contract(helm: Helm) -> None:
    objects = helm.render()
    dep = one(objects, "Deployment", OPERATOR)
    assert dep["spec"]["replicas"] == 2
    c = container(dep, "operator")
    assert "command" not in c, "the image's ENTRYPOINT must run, only args are set"
    assert _args_map(c["args"]) == {
        "--namespace": "$(POD_NAMESPACE)",
        "--workers-statefulset": WORKER,
        "--ring-configmap": RING,
        "--partitions": "256",
        "--liveness-port": "8081",
        "--lease-name": OPERATOR,
        "--rejoin-grace": "300",
        "--webhook-cert-dir": "/etc/camstream/webhook",
        "--webhook-port": "9443",
    }
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    assert env["POD_NAMESPACE"] == "metadata.namespace"


def test_webhook_is_wired_to_the_operator(helm: Helm, tmp_path: Path) -> None:
    """Service → operator pods' webhook port; the configuration trusts the Secret's CA."""
    from camstream_operator.main import WEBHOOK_ID

    objects = helm.render()
    dep = one(objects, "Deployment", OPERATOR)
    c = container(dep, "operator")
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in c["ports"]
    svc = one(objects, "Service", f"{OPERATOR}-webhook")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    secret = one(objects, "Secret", f"{OPERATOR}-webhook-tls")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == secret["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["webhook-tls"] == _args_map(c["args"])["--webhook-cert-dir"]
    (config,) = by_kind(objects, "MutatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["rules"][0]["operations"] == ["CREATE"]
    assert hook["clientConfig"]["service"] == {
        "namespace": NAMESPACE,
        "name": svc["metadata"]["name"],
        "path": f"/{WEBHOOK_ID}",
        "port": 443,
    }
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert "namespaceSelector" not in hook  # every namespace, like the ClusterRoles
    # The certificate is for the Service's name and signed by the bundle's CA.
    for name in ("ca.crt", "tls.crt"):
        (tmp_path / name).write_bytes(base64.b64decode(secret["data"][name]))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"DNS:{svc['metadata']['name']}.{NAMESPACE}.svc" in text


def test_webhook_follows_watch_namespaces_cert_manager_and_can_be_off(helm: Helm) -> None:
    scoped = helm.render(sets=["watchNamespaces={site-a,site-b}"])
    (hook,) = one_kind(scoped, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["site-a", "site-b"]}
    ]
    managed = helm.render(
        sets=[
            "operator.webhook.certManager.enabled=true",
            "operator.webhook.certManager.issuerRef.kind=ClusterIssuer",
            "operator.webhook.certManager.issuerRef.name=internal-ca",
        ]
    )
    assert not _webhook_secrets(managed)
    (cert,) = by_kind(managed, "Certificate")
    assert cert["spec"]["secretName"] == f"{OPERATOR}-webhook-tls"
    config = one_kind(managed, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].endswith(
        f"/{OPERATOR}-webhook"
    )
    with pytest.raises(Exception, match="issuerRef"):
        helm.render(sets=["operator.webhook.certManager.enabled=true"])
    off = helm.render(sets=["operator.webhook.enabled=false"])
    assert not by_kind(off, "MutatingWebhookConfiguration") and not _webhook_secrets(off)
    args = _args_map(container(one(off, "Deployment", OPERATOR), "operator")["args"])
    assert "--webhook-cert-dir" not in args


def _webhook_secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Secrets but the edge's and the workers' tokens (nothing to do with the webhook)."""
    tokens = {f"{RELEASE}-edge-token", f"{RELEASE}-peer-token"}
    return [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] not in tokens]


def one_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = by_kind(objects, kind)
    return obj


def test_partitions_value_reaches_operator(helm: Helm) -> None:
    objects = helm.render(sets=["ring.partitions=4096"])
    c = container(one(objects, "Deployment", OPERATOR), "operator")
    assert _args_map(c["args"])["--partitions"] == "4096"


def test_worker_statefulset_contract(helm: Helm) -> None:
    objects = helm.render()
    sts = one(objects, "StatefulSet", WORKER)
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == WORKER
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    c = container(sts, "worker")
    assert "command" not in c
    assert _args_map(c["args"]) == {
        "--http-port": "8080",
        "--rtmp-port": "1935",
        "--hls-dir": "/var/lib/camstream/hls",
        "--ring-configmap": RING,
        "--operator-namespace": "$(POD_NAMESPACE)",
        "--leave-seconds": "50",
        "--processes": "2",
        # The chart's default deny-list is the worker's own default.
        "--source-deny-cidrs": ",".join(DEFAULT_DENIED_CIDRS),
    }
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in c["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "rtmp": 1935}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["hls"] == "/var/lib/camstream/hls"


def test_edge_deployment_contract(helm: Helm) -> None:
    """The ingest edge (#15): its command, drain within the grace period, readiness, PDB, RBAC."""
    objects = helm.render()
    edge = one(objects, "Deployment", EDGE)
    spec = edge["spec"]
    assert spec["replicas"] == 2
    # A new edge pod is Ready before an old one drains.
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == EDGE
    c = container(edge, "edge")
    assert c["command"] == ["/opt/venv/bin/camstream", "edge"]
    args = _args_map(c["args"])
    assert args == {
        "--rtmp-port": "1935",
        "--worker-rtmp-port": "1935",
        "--http-port": "8081",
        "--ring-configmap": RING,
        "--operator-namespace": "$(POD_NAMESPACE)",
        "--drain-seconds": "30",
    }
    assert pod["terminationGracePeriodSeconds"] > float(args["--drain-seconds"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"rtmp": 1935, "http": 8081}
    pdb = one(objects, "PodDisruptionBudget", EDGE)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    # RBAC: the ring ConfigMap by name, read only; no Secret, nothing cluster-wide.
    role = one(objects, "Role", EDGE)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [RING],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert _bound_subjects(objects, "Role", role) == [
        {"kind": "ServiceAccount", "namespace": NAMESPACE, "name": EDGE}
    ]
    assert not [
        b for b in by_kind(objects, "ClusterRoleBinding")
        if any(s["name"] == EDGE for s in b["subjects"])
    ]  # fmt: skip
    # The workers confirm a pushed stream's handoff once the edge's publisher is live.
    worker = container(one(objects, "StatefulSet", WORKER), "worker")
    assert {"name": "CAMSTREAM_PUSH_VIA_EDGE", "value": "true"} in worker["env"]
    # Both sides get the token with which the edge vouches for cameras' addresses.
    token = {"secretKeyRef": {"name": f"{RELEASE}-edge-token", "key": "token"}}
    for c_ in (c, worker):
        assert {"name": "CAMSTREAM_EDGE_TOKEN", "valueFrom": token} in c_["env"]
    secret = one(objects, "Secret", f"{RELEASE}-edge-token")
    assert len(base64.b64decode(secret["data"]["token"])) >= 32
    # The workers' own token (a handoff's fence, cluster/peer_auth.py) is theirs
    # alone: the edge pods, which face the cameras, never get it.
    peer = {"secretKeyRef": {"name": f"{RELEASE}-peer-token", "key": "token"}}
    assert {"name": "CAMSTREAM_PEER_TOKEN", "valueFrom": peer} in worker["env"]
    assert all(e["name"] != "CAMSTREAM_PEER_TOKEN" for e in c["env"])
    secret = one(objects, "Secret", f"{RELEASE}-peer-token")
    assert len(base64.b64decode(secret["data"]["token"])) >= 32


def test_edge_srt_port_contract(helm: Helm) -> None:
    """edge.srt.port (#15): one UDP Service on the edge pods, the workers' SRT port (UDP, and
    TCP for the edge's legs) reached by the edges only, and the edge reads CameraStreams and
    Secrets exactly where workers may."""
    sets = [
        "edge.srt.port=9000",
        "watchNamespaces={cams}",
        "worker.networkPolicy.enabled=true",
        "worker.networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    ]
    objects = helm.render(sets=sets)
    edge = one(objects, "Deployment", EDGE)
    c = container(edge, "edge")
    args = _args_map(c["args"])
    assert (args["--srt-port"], args["--worker-srt-port"]) == ("9000", "8890")
    assert {"name": "srt", "containerPort": 9000, "protocol": "UDP"} in c["ports"]
    worker = container(one(objects, "StatefulSet", WORKER), "worker")
    assert _args_map(worker["args"])["--srt-port"] == "8890"
    assert {"name": "srt", "containerPort": 8890, "protocol": "UDP"} in worker["ports"]
    # The edge's leg per SRT camera: TCP on the same number.
    assert {"name": "srt-leg", "containerPort": 8890, "protocol": "TCP"} in worker["ports"]
    service = one(objects, "Service", f"{RELEASE}-srt")
    assert service["spec"]["ports"] == [
        {"name": "srt", "port": 9000, "targetPort": "srt", "protocol": "UDP"}
    ]
    assert service["spec"]["selector"] == edge["spec"]["selector"]["matchLabels"]
    assert service["spec"]["type"] == "LoadBalancer"
    # Only the edge pods reach the workers' SRT port, UDP and TCP (the leg).
    policy = one(objects, "NetworkPolicy", f"{WORKER}-rtmp-ingress")
    srt = policy["spec"]["ingress"][-1]
    assert srt["ports"] == [{"port": 8890, "protocol": "UDP"}, {"port": 8890, "protocol": "TCP"}]
    assert [f["podSelector"]["matchLabels"] for f in srt["from"]] == [
        edge["spec"]["selector"]["matchLabels"]
    ]
    # RBAC: get (never list or watch) CameraStreams in the watched namespaces, and the
    # Secrets there through the workers' own binding; nothing cluster-wide.
    me = {"kind": "ServiceAccount", "namespace": NAMESPACE, "name": EDGE}
    streams = one(objects, "Role", f"{RELEASE}-edge-streams")
    assert streams["metadata"]["namespace"] == "cams"
    assert streams["rules"] == [
        {"apiGroups": ["camstream.io"], "resources": ["camerastreams"], "verbs": ["get"]}
    ]
    assert _bound_subjects(objects, "Role", streams) == [me]
    secrets = one(objects, "RoleBinding", f"{RELEASE}-worker-secrets")
    assert secrets["metadata"]["namespace"] == "cams" and me in secrets["subjects"]
    assert not [
        b for b in by_kind(objects, "ClusterRoleBinding") if me in b["subjects"]
    ]  # fmt: skip
    # Off by default: no SRT anywhere, and the edge reads no Secret.
    default = helm.render()
    assert not [s for s in by_kind(default, "Service") if s["metadata"]["name"].endswith("-srt")]
    assert "--srt-port" not in container(one(default, "Deployment", EDGE), "edge")["args"]
    default_worker = container(one(default, "StatefulSet", WORKER), "worker")
    assert not [p for p in default_worker["ports"] if p["name"].startswith("srt")]
    assert not [
        b for b in by_kind(default, "RoleBinding") + by_kind(default, "ClusterRoleBinding")
        if me in b["subjects"] and "secrets" in b["roleRef"]["name"]
    ]  # fmt: skip


def test_edge_drain_must_fit_the_grace_period(helm: Helm) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--set", "edge.drainSeconds=60", check=False)
    assert result.returncode != 0
    assert "edge.terminationGracePeriodSeconds (45) must exceed edge.drainSeconds (60)" in (
        result.stderr
    )


def test_grace_period_and_hard_anti_affinity_by_value(helm: Helm) -> None:
    objects = helm.render(
        sets=["worker.terminationGracePeriodSeconds=240", "worker.antiAffinity=hard"]
    )
    pod = one(objects, "StatefulSet", WORKER)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 240
    args = container(one(objects, "StatefulSet", WORKER), "worker")["args"]
    assert _args_map(args)["--leave-seconds"] == "230"
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    assert required[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"


def test_pods_run_non_root_read_only(helm: Helm) -> None:
    objects = helm.render()
    for owner in (one(objects, "Deployment", OPERATOR), one(objects, "StatefulSet", WORKER)):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_image_tag_defaults_to_app_version(helm: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    objects = helm.render(sets=["image.registry=registry.test/"])
    assert container(one(objects, "Deployment", OPERATOR), "operator")["image"] == (
        f"registry.test/camstream/operator:{app_version}"
    )
    assert container(one(objects, "StatefulSet", WORKER), "worker")["image"] == (
        f"registry.test/camstream/worker:{app_version}"
    )


# -- storage, services, ingress, autoscaling ----------------------------------


def _hls_volume(sts: dict[str, Any]) -> dict[str, Any] | None:
    vols = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "hls"]
    return vols[0] if vols else None


def test_hls_storage_empty_dir(helm: Helm) -> None:
    sts = one(helm.render(), "StatefulSet", WORKER)
    assert _hls_volume(sts) == {"name": "hls", "emptyDir": {"sizeLimit": "2Gi"}}
    assert "volumeClaimTemplates" not in sts["spec"]


def test_hls_storage_memory(helm: Helm) -> None:
    sts = one(
        helm.render(sets=["worker.hls.storage=memory", "worker.hls.size=512Mi"]),
        "StatefulSet",
        WORKER,
    )
    expected = {"name": "hls", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
    assert _hls_volume(sts) == expected


def test_hls_storage_pvc(helm: Helm) -> None:
    sts = one(
        helm.render(
            sets=[
                "worker.hls.storage=pvc",
                "worker.hls.size=10Gi",
                "worker.hls.storageClassName=fast",
            ]
        ),
        "StatefulSet",
        WORKER,
    )
    assert _hls_volume(sts) is None
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "hls"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Delete",
    }


def test_services(helm: Helm) -> None:
    objects = helm.render()
    headless = one(objects, "Service", WORKER)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    playback = one(objects, "Service", f"{RELEASE}-playback")
    assert playback["spec"]["type"] == "ClusterIP"
    assert playback["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    rtmp = one(objects, "Service", f"{RELEASE}-rtmp")
    assert rtmp["spec"]["type"] == "LoadBalancer"
    assert rtmp["spec"]["ports"][0]["port"] == 1935
    assert rtmp["spec"]["ports"][0]["targetPort"] == "rtmp"
    worker_selector = one(objects, "StatefulSet", WORKER)["spec"]["selector"]["matchLabels"]
    for svc in (headless, playback):
        assert svc["spec"]["selector"] == worker_selector
    # Cameras connect to the ingest edge, which holds them through worker changes.
    edge_selector = one(objects, "Deployment", EDGE)["spec"]["selector"]["matchLabels"]
    assert rtmp["spec"]["selector"] == edge_selector != worker_selector
    # Without the edge, any worker takes cameras (and relays them), as before.
    off = helm.render(sets=["edge.enabled=false"])
    rtmp_off = one(off, "Service", f"{RELEASE}-rtmp")
    assert rtmp_off["spec"]["selector"] == worker_selector
    assert EDGE not in {d["metadata"]["name"] for d in by_kind(off, "Deployment")}
    off_env = container(one(off, "StatefulSet", WORKER), "worker")["env"]
    assert "CAMSTREAM_PUSH_VIA_EDGE" not in {e["name"] for e in off_env}


def test_rtmp_node_port(helm: Helm) -> None:
    objects = helm.render(sets=["rtmp.service.type=NodePort", "rtmp.service.nodePort=31935"])
    rtmp = one(objects, "Service", f"{RELEASE}-rtmp")
    assert rtmp["spec"]["type"] == "NodePort"
    assert rtmp["spec"]["ports"][0]["nodePort"] == 31935
    assert "loadBalancerSourceRanges" not in rtmp["spec"]


def test_rtmp_disabled(helm: Helm) -> None:
    objects = helm.render(sets=["rtmp.enabled=false"])
    assert f"{RELEASE}-rtmp" not in {s["metadata"]["name"] for s in by_kind(objects, "Service")}


def test_rtmp_edge_restricts_sources(helm: Helm) -> None:
    objects = helm.render([CHART / "examples" / "rtmp-edge.yaml"])
    spec = one(objects, "Service", f"{RELEASE}-rtmp")["spec"]
    assert spec["externalTrafficPolicy"] == "Local"
    assert spec["loadBalancerSourceRanges"]


def test_ingress_with_cert_manager_tls(helm: Helm) -> None:
    objects = helm.render(
        sets=[
            "playback.ingress.enabled=true",
            "playback.ingress.host=video.example.com",
            "playback.ingress.tls.enabled=true",
            "playback.ingress.tls.clusterIssuer=letsencrypt",
        ]
    )
    ing = one(objects, "Ingress", f"{RELEASE}-playback")
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["spec"]["tls"] == [
        {"hosts": ["video.example.com"], "secretName": f"{RELEASE}-playback-tls"}
    ]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "video.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-playback", "port": {"name": "http"}}


def test_autoscaling_replaces_replicas(helm: Helm) -> None:
    objects = helm.render(
        sets=["worker.autoscaling.enabled=true", "worker.autoscaling.maxReplicas=12"]
    )
    assert "replicas" not in one(objects, "StatefulSet", WORKER)["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler", WORKER)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": WORKER,
    }
    assert hpa["spec"]["maxReplicas"] == 12
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_pod_disruption_budget(helm: Helm) -> None:
    objects = helm.render()
    pdb = one(objects, "PodDisruptionBudget", WORKER)
    assert pdb["spec"]["maxUnavailable"] == 1
    sts = one(objects, "StatefulSet", WORKER)
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]


# -- RBAC ----------------------------------------------------------------------


def _rules(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    out: set[tuple[str, str, str]] = set()
    for rule in obj["rules"]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def _triples(group: str, resource: str, verbs: str) -> set[tuple[str, str, str]]:
    return {(group, resource, v) for v in verbs.split()}


EVENTS = _triples("", "events", "create patch") | _triples(
    "events.k8s.io", "events", "create patch"
)
# The operator patches partition labels and writes no stream status.
OPERATOR_STREAM_RULES = _triples("camstream.io", "camerastreams", "get list watch patch") | EVENTS
OPERATOR_RELEASE_RULES = (
    _triples("", "pods", "get list watch patch")
    | _triples("apps", "statefulsets", "get list watch")
    | _triples("", "configmaps", "get list watch create patch")
    | _triples("coordination.k8s.io", "leases", "get list watch create update patch delete")
    | EVENTS
)
WORKER_STREAM_RULES = (
    _triples("camstream.io", "camerastreams", "get list watch")
    | _triples("camstream.io", "camerastreams/status", "get patch")
    | EVENTS
)
# Only in its own ClusterRole, bound per namespace (or nowhere): see rbac.yaml.
WORKER_SECRET_RULES = _triples("", "secrets", "get")
WORKER_SECRETS = f"{NAMESPACE}-{RELEASE}-worker-secrets"
WORKER_RELEASE_RULES = (
    _triples("", "configmaps", "get list watch")
    | _triples("", "pods", "get patch")
    | _triples("coordination.k8s.io", "leases", "get create update patch")
    | EVENTS
)


def _bound_subjects(objects: list[dict[str, Any]], kind: str, role: dict[str, Any]) -> list[Any]:
    binding_kind = "ClusterRoleBinding" if kind == "ClusterRole" else "RoleBinding"
    ns = role["metadata"].get("namespace")
    return [
        s
        for b in by_kind(objects, binding_kind)
        if b["roleRef"]
        == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role["metadata"]["name"]}
        and b["metadata"].get("namespace") == ns
        for s in b["subjects"]
    ]


def test_rbac_all_namespaces_least_privilege(helm: Helm) -> None:
    objects = helm.render()
    sa = {"kind": "ServiceAccount", "namespace": NAMESPACE}
    cluster = {c["metadata"]["name"]: c for c in by_kind(objects, "ClusterRole")}
    op_cr = cluster[f"{NAMESPACE}-{RELEASE}-operator"]
    w_cr = cluster[f"{NAMESPACE}-{RELEASE}-worker"]
    assert _rules(op_cr) == OPERATOR_STREAM_RULES
    assert _rules(w_cr) == WORKER_STREAM_RULES
    assert _bound_subjects(objects, "ClusterRole", op_cr) == [{**sa, "name": OPERATOR}]
    assert _bound_subjects(objects, "ClusterRole", w_cr) == [{**sa, "name": WORKER}]
    # Secrets: a ClusterRole that grants nothing until a namespace binds it.
    secrets = cluster[WORKER_SECRETS]
    assert _rules(secrets) == WORKER_SECRET_RULES
    assert "resourceNames" not in secrets["rules"][0]
    assert _secret_bindings(objects) == {}

    op_role = one(objects, "Role", OPERATOR)
    w_role = one(objects, "Role", WORKER)
    assert op_role["metadata"]["namespace"] == w_role["metadata"]["namespace"] == NAMESPACE
    assert _rules(op_role) == OPERATOR_RELEASE_RULES
    assert _rules(w_role) == WORKER_RELEASE_RULES
    assert _bound_subjects(objects, "Role", op_role) == [{**sa, "name": OPERATOR}]
    assert _bound_subjects(objects, "Role", w_role) == [{**sa, "name": WORKER}]

    # Pods run as these accounts.
    assert (
        one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["serviceAccountName"]
        == OPERATOR
    )
    assert (
        one(objects, "StatefulSet", WORKER)["spec"]["template"]["spec"]["serviceAccountName"]
        == WORKER
    )


def test_rbac_no_wildcards_no_secret_listing(helm: Helm) -> None:
    for example in [None, *EXAMPLES]:
        objects = helm.render([example] if example else [])
        for role in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
            granted = _rules(role)
            assert not any("*" in part for triple in granted for part in triple), role
            secret_verbs = {v for g, r, v in granted if r == "secrets"}
            assert secret_verbs <= {"get"}, f"{role['metadata']['name']} may {secret_verbs} secrets"
            assert (
                not any(r == "secrets" for g, r, v in granted)
                or "worker" in role["metadata"]["name"]
            ), "only workers read Secrets"


def _secret_bindings(objects: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Where the workers' Secrets ClusterRole is bound: namespace ("*" = all) -> subjects."""
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WORKER_SECRETS}
    out: dict[str, list[Any]] = {}
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in by_kind(objects, kind):
            if binding["roleRef"] == ref:
                out[binding["metadata"].get("namespace", "*")] = binding["subjects"]
    return out


def test_rbac_worker_secrets_by_namespace_by_name_or_everywhere(helm: Helm) -> None:
    subject = [{"kind": "ServiceAccount", "name": WORKER, "namespace": NAMESPACE}]
    # Follows watchNamespaces unless told otherwise.
    watched = helm.render(sets=["watchNamespaces={site-a,site-b}"])
    assert _secret_bindings(watched) == {"site-a": subject, "site-b": subject}
    listed = helm.render(
        sets=[
            "watchNamespaces={site-a,site-b}",
            "rbac.workerSecrets.namespaces={site-b}",
            "rbac.workerSecrets.names={door-key,gate-key}",
        ]
    )
    assert _secret_bindings(listed) == {"site-b": subject}
    (role,) = [r for r in by_kind(listed, "ClusterRole") if r["metadata"]["name"] == WORKER_SECRETS]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["door-key", "gate-key"],
        }
    ]
    everywhere = helm.render(sets=["rbac.workerSecrets.allNamespaces=true"])
    assert _secret_bindings(everywhere) == {"*": subject}
    result = helm.template(
        sets=["rbac.workerSecrets.allNamespaces=true", "rbac.workerSecrets.namespaces={a}"],
        check=False,
    )
    assert result.returncode != 0
    assert "rbac.workerSecrets.allNamespaces and rbac.workerSecrets.namespaces" in clean_stderr(
        result.stderr
    )


def test_workers_take_rtmp_from_the_edge_and_each_other_only(helm: Helm) -> None:
    objects = helm.render(
        sets=[
            "worker.networkPolicy.enabled=true",
            "worker.networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        ]
    )
    policy = one(objects, "NetworkPolicy", f"{WORKER}-rtmp-ingress")
    workers = one(objects, "StatefulSet", WORKER)["spec"]["selector"]["matchLabels"]
    edges = one(objects, "Deployment", EDGE)["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == workers
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    http, rtmp = policy["spec"]["ingress"]
    assert "from" not in http and http["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rtmp["ports"] == [{"port": 1935, "protocol": "TCP"}]
    assert [f["podSelector"]["matchLabels"] for f in rtmp["from"]] == [edges, workers]


def test_worker_egress_network_policy(helm: Helm) -> None:
    assert not by_kind(helm.render(), "NetworkPolicy")
    objects = helm.render(
        sets=[
            "worker.networkPolicy.enabled=true",
            "worker.networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            "worker.networkPolicy.cameras[0].cidr=10.20.0.0/16",
            "worker.networkPolicy.cameras[0].ports[0].port=554",
            "worker.networkPolicy.cameras[0].ports[0].protocol=TCP",
        ]
    )
    policy = one(objects, "NetworkPolicy", f"{WORKER}-egress")
    sts = one(objects, "StatefulSet", WORKER)
    workers = sts["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == workers
    assert policy["spec"]["policyTypes"] == ["Egress"]
    dns, api, peers, cameras = policy["spec"]["egress"]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert api == {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
    }
    assert peers == {
        "to": [{"podSelector": {"matchLabels": workers}}],
        "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 1935, "protocol": "TCP"}],
    }
    assert cameras == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 554, "protocol": "TCP"}],
    }
    # The default camera rule: anywhere but the link-local and metadata addresses.
    default = one(
        helm.render(
            sets=[
                "worker.networkPolicy.enabled=true",
                "worker.networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            ]
        ),
        "NetworkPolicy",
        f"{WORKER}-egress",
    )
    blocks = [rule["to"][0]["ipBlock"] for rule in default["spec"]["egress"][3:]]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16", "100.100.100.200/32"]},
        {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::254/128"]},
    ]
    assert all("ports" not in rule for rule in default["spec"]["egress"][3:])
    result = helm.template(sets=["worker.networkPolicy.enabled=true"], check=False)
    assert result.returncode != 0
    assert "worker.networkPolicy.apiServer.cidrs is required" in clean_stderr(result.stderr)


def test_worker_deny_list_by_value(helm: Helm) -> None:
    args = container(
        one(helm.render(sets=["worker.sources.denyCIDRs={10.96.0.0/12}"]), "StatefulSet", WORKER),
        "worker",
    )["args"]
    assert args[args.index("--source-deny-cidrs") + 1] == "10.96.0.0/12"
    args = container(
        one(helm.render(sets=["worker.sources.denyCIDRs=null"]), "StatefulSet", WORKER), "worker"
    )["args"]
    assert args[args.index("--source-deny-cidrs") + 1] == ""


def _watched(objects: list[dict[str, Any]]) -> list[list[str]]:
    """The --watch-namespace values each component is started with."""
    values = []
    for owner, name in (
        (one(objects, "Deployment", OPERATOR), "operator"),
        (one(objects, "StatefulSet", WORKER), "worker"),
    ):
        args = container(owner, name)["args"]
        values.append([args[i + 1] for i, arg in enumerate(args) if arg == "--watch-namespace"])
    return values


def test_watch_namespaces_reach_both_components(helm: Helm) -> None:
    assert _watched(helm.render()) == [[], []]
    objects = helm.render(sets=["watchNamespaces={site-a,site-b}"])
    assert _watched(objects) == [["site-a", "site-b"], ["site-a", "site-b"]]


def test_worker_processes_value_reaches_the_worker(helm: Helm) -> None:
    args = container(
        one(helm.render(sets=["worker.processes=4"]), "StatefulSet", WORKER), "worker"
    )["args"]
    assert args[args.index("--processes") + 1] == "4"
    with pytest.raises(Exception, match="processes"):
        helm.render(sets=["worker.processes=0"])


def test_rbac_watch_namespaces_uses_roles(helm: Helm) -> None:
    objects = helm.render(sets=["watchNamespaces={site-a,site-b}"])
    # The one ClusterRole left is the Secrets' one, bound in those namespaces only.
    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == [WORKER_SECRETS]
    assert not by_kind(objects, "ClusterRoleBinding")
    for ns in ("site-a", "site-b"):
        roles = [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == ns]
        by_name = {r["metadata"]["name"]: r for r in roles}
        assert _rules(by_name[f"{RELEASE}-operator-streams"]) == OPERATOR_STREAM_RULES
        assert _rules(by_name[f"{RELEASE}-worker-streams"]) == WORKER_STREAM_RULES
        for role in roles:
            (subject,) = _bound_subjects(objects, "Role", role)
            assert subject["namespace"] == NAMESPACE


# -- monitoring ----------------------------------------------------------------

METRICS_DOC = REPO / "docs" / "metrics.md"
ALERTS_FILE = REPO / "monitoring" / "alerts.yaml"
DASHBOARD = CHART / "dashboards" / "camstream-fleet.json"
_METRIC_RE = re.compile(r"\bcamstream_[a-z0-9_]+")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics() -> set[str]:
    names = set()
    for line in METRICS_DOC.read_text().splitlines():
        if line.startswith("|"):
            m = re.match(r"\|\s*`(camstream_[a-z0-9_]+)", line)
            if m:
                names.add(m.group(1))
    return names


def _undocumented(text: str) -> set[str]:
    known = documented_metrics()
    missing = set()
    for name in set(_METRIC_RE.findall(text)):
        base = name
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in known:
                base = name[: -len(suffix)]
        if base not in known:
            missing.add(name)
    return missing


def test_metrics_doc_lists_the_contract() -> None:
    assert documented_metrics() == {
        "camstream_streams",
        "camstream_stream_up",
        "camstream_stream_phase",
        "camstream_stream_bytes_in_total",
        "camstream_stream_segments_total",
        "camstream_stream_reconnects_total",
        "camstream_stream_segment_age_seconds",
        "camstream_worker_partitions",
        "camstream_stream_double_serving_seconds_total",
        "camstream_rtmp_connections",
        "camstream_rtmp_rejected_total",
        "camstream_http_connections",
        "camstream_http_connections_refused_total",
        "camstream_http_accept_errors_total",
        "camstream_playback_refused_total",
        "camstream_rtmp_accepting",
        "camstream_ring_version",
        "camstream_ring_members",
        "camstream_handoffs_total",
        "camstream_handoff_duration_seconds",
        "camstream_operator_leader",
        "camstream_ring_workers",
        "camstream_streams_unlabelled",
        "camstream_streams_labelled_total",
        "camstream_event_loop_lag_seconds",
        "camstream_event_loop_lag_max_seconds",
        "camstream_recording_upload_lag_seconds",
        "camstream_recording_spool_bytes",
        "camstream_recording_pending_groups",
        "camstream_recording_uploads_total",
        "camstream_recording_uploaded_bytes_total",
        "camstream_recording_upload_failures_total",
        "camstream_recording_dropped_groups_total",
        "camstream_recording_dropped_bytes_total",
        "camstream_recording_retention_deleted_objects_total",
        "camstream_recording_retention_deleted_bytes_total",
        "camstream_recording_retention_failures_total",
        "camstream_recording_retention_last_sweep_timestamp_seconds",
        "camstream_event_loop_stall_seconds",
        "camstream_event_loop_stall_max_seconds",
        # The ingest edge (#15).
        "camstream_edge_connections",
        "camstream_edge_publishing",
        "camstream_edge_accepting",
        "camstream_edge_publishes_total",
        "camstream_edge_refused_total",
        "camstream_edge_received_bytes_total",
        "camstream_edge_relayed_bytes_total",
        "camstream_edge_owner_reconnects_total",
        "camstream_edge_owner_lost_total",
        "camstream_edge_handoffs_forked_total",
        "camstream_edge_owner_overflows_total",
        "camstream_edge_srt_connections",
        "camstream_edge_srt_relays",
        "camstream_edge_srt_received_bytes_total",
        "camstream_edge_srt_passphrases",
        "camstream_edge_srt_lookups",
        "camstream_edge_srt_lookups_busy_total",
        "camstream_edge_srt_lookup_failures_total",
        "camstream_edge_srt_refused_total",
        "camstream_edge_srt_refusal_reports_total",
        # The SRT ingest (#15), with --srt-port.
        "camstream_srt_connections",
        "camstream_srt_handshakes",
        "camstream_srt_received_bytes_total",
        "camstream_srt_rejected_total",
        "camstream_srt_edge_legs_total",
    }


def test_dashboard_configmap(helm: Helm) -> None:
    objects = helm.render()
    cm = one(objects, "ConfigMap", f"{RELEASE}-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["camstream-fleet.json"])
    assert dash == json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs and _undocumented("\n".join(exprs)) == set()
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for needed in (
        "by phase", "per worker", "reconnect", "handoff", "segment age", "recording", "edge",
    ):  # fmt: skip
        assert needed in titles, f"dashboard has no panel about {needed}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_monitoring_objects_by_value(helm: Helm) -> None:
    assert not by_kind(helm.render(), "ServiceMonitor")
    objects = helm.render(
        sets=[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prom",
            "metrics.prometheusRule.enabled=true",
        ]
    )
    monitors = {m["metadata"]["name"]: m for m in by_kind(objects, "ServiceMonitor")}
    assert set(monitors) == {WORKER, OPERATOR}
    for m in monitors.values():
        assert m["metadata"]["labels"]["release"] == "prom"
        (endpoint,) = m["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
        # The stream's own `namespace` label must survive the scrape.
        assert endpoint["honorLabels"] is True
    keep = monitors[WORKER]["spec"]["endpoints"][0]["relabelings"][0]
    assert keep == {
        "sourceLabels": ["__meta_kubernetes_service_name"],
        "regex": WORKER,
        "action": "keep",
    }
    assert one(objects, "PrometheusRule", RELEASE)


def test_alerts_use_documented_metrics_and_match_monitoring_file(helm: Helm) -> None:
    objects = helm.render(
        sets=["metrics.prometheusRule.enabled=true"], release="camstream", namespace="camstream"
    )
    rule = one(objects, "PrometheusRule", "camstream")
    standalone = yaml.safe_load(ALERTS_FILE.read_text())
    # monitoring/alerts.yaml is a plain Prometheus rule file: the same groups.
    assert standalone == {"groups": rule["spec"]["groups"]}, (
        "monitoring/alerts.yaml is out of step with templates/prometheusrule.yaml; "
        "regenerate it (see docs/metrics.md)"
    )
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"CameraStreamDown", "CamstreamWorkerOverloaded"} <= set(alerts)
    assert _undocumented("\n".join(r["expr"] for r in alerts.values())) == set()
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"], name
        # Prometheus templates survive helm's own templating.
        assert "{{" not in alert["expr"], name


def test_alert_thresholds_by_value(helm: Helm) -> None:
    objects = helm.render(
        sets=[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.maxStreamsPerWorker=77",
            "metrics.prometheusRule.streamDownFor=9m",
        ]
    )
    rule = one(objects, "PrometheusRule", RELEASE)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "> 77" in alerts["CamstreamWorkerOverloaded"]["expr"]
    assert alerts["CameraStreamDown"]["for"] == "9m"
    assert f'job="{WORKER}"' in alerts["CameraStreamDown"]["expr"]


# -- the CRD: one source of truth -------------------------------------------------


def test_chart_crd_is_the_repository_crd() -> None:
    chart_crd = CHART / "crds" / "camerastream.yaml"
    assert chart_crd.is_symlink(), "the chart must link crds/, not keep a copy"
    assert chart_crd.resolve() == (REPO / "crds" / "camerastream.yaml").resolve()
    assert [p.name for p in (CHART / "crds").iterdir()] == ["camerastream.yaml"]


def test_include_crds_renders_the_crd(helm: Helm) -> None:
    objects = helm.render(include_crds=True)
    (crd,) = by_kind(objects, "CustomResourceDefinition")
    assert crd == yaml.safe_load((REPO / "crds" / "camerastream.yaml").read_text())
    assert crd["spec"]["group"] == "camstream.io"
    assert crd["spec"]["names"]["kind"] == "CameraStream"


def test_packaged_chart_carries_the_crd_byte_for_byte(helm: Helm, tmp_path: Path) -> None:
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("camstream-*.tgz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        member = tar.extractfile("camstream/crds/camerastream.yaml")
        assert member is not None
        assert member.read() == (REPO / "crds" / "camerastream.yaml").read_bytes()
    assert not any("/examples/" in n for n in names)
    assert "camstream/dashboards/camstream-fleet.json" in names
    # The packaged chart renders on its own, away from the repository.
    objects = helm.render(chart=archive, include_crds=True)
    assert by_kind(objects, "CustomResourceDefinition")


# -- values.schema.json: bad values fail with a readable message ----------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["ring.partitions=100"], ["ring/partitions", "256"]),
        (["worker.hls.storage=nfs"], ["worker/hls/storage", "emptyDir", "memory", "pvc"]),
        (["rtmp.service.type=External"], ["rtmp/service/type", "LoadBalancer", "NodePort"]),
        (["rtmp.service.type=NodePort", "rtmp.service.nodePort=80"], ["rtmp/service/nodePort"]),
        (["worker.replica=3"], ["worker", "replica"]),
        (["worker.terminationGracePeriodSeconds=1"], ["terminationGracePeriodSeconds", "20"]),
        (["worker.hls.size=lots"], ["worker/hls/size"]),
        (["watchNamespaces={Bad_NS}"], ["watchNamespaces/0"]),
        (["operator.replicas=0"], ["operator/replicas"]),
        (["metrics.serviceMonitor.interval=30"], ["metrics/serviceMonitor/interval"]),
        (["worker.sources.denyCIDRs={metadata}"], ["worker/sources/denyCIDRs/0"]),
        (["rbac.workerSecrets.names={../x}"], ["rbac/workerSecrets/names/0"]),
        (["rbac.workerSecrets.namespaces={Kube_System}"], ["rbac/workerSecrets/namespaces/0"]),
    ],
    ids=lambda v: v[0] if isinstance(v, list) and isinstance(v[0], str) and "=" in v[0] else None,
)
def test_schema_rejects_bad_values(helm: Helm, sets: list[str], expected: list[str]) -> None:
    result = helm.template(sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    message = clean_stderr(result.stderr)
    assert "values don't meet the specifications of the schema" in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert len(message) < 2000, "one bad value should give a short message"


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["playback.ingress.enabled=true"], "playback.ingress.host is required"),
        (
            [
                "worker.autoscaling.enabled=true",
                "worker.autoscaling.minReplicas=9",
                "worker.autoscaling.maxReplicas=4",
            ],
            "worker.autoscaling.minReplicas (9) must not exceed worker.autoscaling.maxReplicas (4)",
        ),
        (
            ["ring.partitions=16", "worker.replicas=20"],
            "ring.partitions (16) must be at least the number of workers (20)",
        ),
        (
            ["worker.replicas=2", "worker.podDisruptionBudget.maxUnavailable=2"],
            "worker.podDisruptionBudget.maxUnavailable (2) must be below worker.replicas (2)",
        ),
    ],
)
def test_cross_field_checks(helm: Helm, sets: list[str], expected: str) -> None:
    result = helm.template(sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    assert expected in clean_stderr(result.stderr)


def test_schema_accepts_every_documented_example_and_default(helm: Helm) -> None:
    # values.yaml itself must satisfy the schema's own types.
    for example in [None, *EXAMPLES]:
        helm.template([example] if example else [])
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "a top-level value missing from the schema"


# -- recording ---------------------------------------------------------------


def _env(pod_owner: dict[str, Any], name: str) -> dict[str, Any]:
    return {e["name"]: e for e in container(pod_owner, name).get("env", [])}


def test_recording_store_reaches_workers_and_operator_credentials_from_a_secret(
    helm: Helm,
) -> None:
    objects = helm.render([CHART / "examples" / "recording-s3.yaml"])
    worker = _env(one(objects, "StatefulSet", WORKER), "worker")
    operator = _env(one(objects, "Deployment", OPERATOR), "operator")
    for env in (worker, operator):
        assert env["CAMSTREAM_RECORDING_STORE"]["value"] == "s3"
        assert env["CAMSTREAM_RECORDING_S3_BUCKET"]["value"] == "camstream-recordings"
        assert env["CAMSTREAM_RECORDING_S3_ENDPOINT"]["value"].startswith("http://minio.")
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ):
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "camstream-recordings-s3", "key": key}
            assert "value" not in env[variable]  # never inline
    defaults = json.loads(worker["CAMSTREAM_RECORDING_DEFAULTS"]["value"])
    assert defaults["default"] == {"enabled": True, "retention": {"maxAgeHours": 168}}
    assert defaults["namespaces"]["lobby"]["retention"]["maxAgeHours"] == 72
    assert worker["CAMSTREAM_RECORDING_SPOOL_BYTES"]["value"] == "4294967296"
    args = container(one(objects, "Deployment", OPERATOR), "operator")["args"]
    assert args[args.index("--retention-interval") + 1] == "300"
    # The defaults parse as the worker will parse them.
    from camstream_worker.outputs.recording.service import defaults_from_env

    parsed = defaults_from_env({"CAMSTREAM_RECORDING_DEFAULTS": json.dumps(defaults)})
    assert parsed.for_namespace("lobby").max_age_hours == 72


def test_recording_is_off_by_default(helm: Helm) -> None:
    objects = helm.render()
    worker = _env(one(objects, "StatefulSet", WORKER), "worker")
    assert worker["CAMSTREAM_RECORDING_STORE"]["value"] == "off"
    assert "AWS_SECRET_ACCESS_KEY" not in worker
    args = container(one(objects, "Deployment", OPERATOR), "operator")["args"]
    assert "--retention-interval" not in args


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["recording.store=s3"], "recording.s3.bucket is required"),
        (
            ["recording.store=s3", "recording.s3.bucket=b", "worker.hls.storage=memory"],
            "recording.store s3 needs worker.hls.storage emptyDir or pvc",
        ),
    ],
)
def test_recording_cross_field_checks(helm: Helm, sets: list[str], expected: str) -> None:
    result = helm.template(sets=sets, check=False)
    assert result.returncode != 0 and expected in clean_stderr(result.stderr)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["recording.store=gcs"], "recording/store"),
        (["recording.s3.endpoint=minio:9000"], "recording/s3/endpoint"),
        (["recording.default.retention.maxSize=10GB"], "recording/default/retention/maxSize"),
        (["recording.spoolBytes=1000"], "recording/spoolBytes"),
    ],
)
def test_recording_values_are_checked(helm: Helm, sets: list[str], expected: str) -> None:
    result = helm.template(sets=sets, check=False)
    assert result.returncode != 0 and expected in clean_stderr(result.stderr)
