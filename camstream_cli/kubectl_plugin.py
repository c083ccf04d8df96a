"""`kubectl camstream`: the ring, a stream's playback URL, and why a stream is in its phase.

    kubectl camstream ring [-n RELEASE_NS] [--ring NAME]
    kubectl camstream open NS/NAME
    kubectl camstream why NS/NAME

Who calls this: kubectl, which runs any executable named `kubectl-camstream`
on the PATH for `kubectl camstream ...` (the console script setup.cfg
installs). It reads, never writes, with the `kubernetes` client: a
synchronous one-shot CLI is what that library is made for (the components'
long-running loops use camstream/kubeapi.py instead). Credentials come from
KUBECONFIG (as kubectl's own), --kubeconfig, or the in-cluster account.

The release is found by its ring ConfigMap (label
app.kubernetes.io/part-of=camstream, a `partitions` key) in the release
namespace (-n, else $CAMSTREAM_NAMESPACE, else "camstream"); its other
objects are named after it the way the chart names them (<release>-ring,
<release>-worker, <release>-playback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from camstream import wire
from camstream.handoff import RingDoc
from camstream.handoff_codec import CodecError, decode_doc

from . import plugin_views

PART_OF = "app.kubernetes.io/part-of=camstream"


class PluginError(Exception):
    """Something the user can act on; printed as one line, exit code 1."""


@dataclass
class Release:
    namespace: str
    ring: str  # the ring ConfigMap's name: <fullname>-ring
    doc: RingDoc | None

    @property
    def fullname(self) -> str:
        return self.ring.removesuffix("-ring")


class Cluster:
    """The few reads the plugin makes, as plain dicts (the views take no client models)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config

        try:
            if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get(
                "KUBERNETES_SERVICE_HOST"
            ):
                config.load_kube_config(config_file=kubeconfig, context=context)
            else:
                config.load_incluster_config()
        except Exception as exc:  # the library raises several types for one cause
            raise PluginError(f"cannot load a kubeconfig: {exc}") from exc
        self._client = client.ApiClient()
        self._core = client.CoreV1Api(self._client)
        self._net = client.NetworkingV1Api(self._client)
        self._custom = client.CustomObjectsApi(self._client)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        try:
            result = fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise LookupError(what) from exc
            raise PluginError(f"reading {what}: {exc.status} {exc.reason}") from exc
        return dict(self._client.sanitize_for_serialization(result))

    def configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"configmap {namespace}/{name}", self._core.read_namespaced_config_map,
                          name, namespace)  # fmt: skip

    def configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        listed = self._call(f"configmaps in {namespace}", self._core.list_namespaced_config_map,
                            namespace, label_selector=selector)  # fmt: skip
        return list(listed.get("items") or [])

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._call(f"pods in {namespace}", self._core.list_namespaced_pod, namespace)
        return list(listed.get("items") or [])

    def events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        listed = self._call(f"events in {namespace}", self._core.list_namespaced_event,
                            namespace, field_selector=field_selector)  # fmt: skip
        return list(listed.get("items") or [])

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"service {namespace}/{name}", self._core.read_namespaced_service,
                          name, namespace)  # fmt: skip

    def ingress(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"ingress {namespace}/{name}", self._net.read_namespaced_ingress,
                          name, namespace)  # fmt: skip

    def stream(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"CameraStream {namespace}/{name}",
                          self._custom.get_namespaced_custom_object, wire.API_GROUP,
                          wire.API_VERSION, namespace, wire.PLURAL, name)  # fmt: skip


def find_release(cluster: Cluster, namespace: str, ring_name: str | None) -> Release:
    if ring_name:
        try:
            cm = cluster.configmap(namespace, ring_name)
        except LookupError:
            raise PluginError(f"no ring ConfigMap {namespace}/{ring_name}") from None
    else:
        found = [
            cm
            for cm in cluster.configmaps(namespace, PART_OF)
            if "partitions" in (cm.get("data") or {})
        ]
        if not found:
            raise PluginError(
                f"no camstream ring in namespace {namespace}: pass the release's namespace "
                "with -n (or set CAMSTREAM_NAMESPACE)"
            )
        if len(found) > 1:
            names = ", ".join(sorted(c["metadata"]["name"] for c in found))
            raise PluginError(f"several rings in {namespace} ({names}): choose one with --ring")
        cm = found[0]
    try:
        doc = decode_doc(cm.get("data") or {})
    except CodecError as exc:
        raise PluginError(f"the ring ConfigMap cannot be read: {exc}") from exc
    return Release(namespace=namespace, ring=str(cm["metadata"]["name"]), doc=doc)


def worker_pods(cluster: Cluster, release: Release) -> list[dict[str, Any]]:
    prefix = f"{release.fullname}-worker-"
    pods = cluster.pods(release.namespace)
    return [p for p in pods if str(p["metadata"]["name"]).startswith(prefix)]


def _stream_ref(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise PluginError(f"name a stream as NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _read_stream(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    try:
        return cluster.stream(namespace, name)
    except LookupError:
        raise PluginError(f"no CameraStream {namespace}/{name}") from None


def cmd_ring(cluster: Cluster, args: argparse.Namespace) -> list[str]:
    release = find_release(cluster, args.namespace, args.ring)
    if release.doc is None:
        return [f"ring {release.namespace}/{release.ring} is empty"]
    return plugin_views.ring_view(release.doc, worker_pods(cluster, release))


def cmd_why(cluster: Cluster, args: argparse.Namespace) -> list[str]:
    namespace, name = _stream_ref(args.stream)
    stream = _read_stream(cluster, namespace, name)
    release = find_release(cluster, args.namespace, args.ring)
    events = cluster.events(
        namespace, f"involvedObject.kind={wire.KIND},involvedObject.name={name}"
    )
    return plugin_views.why_view(
        stream, doc=release.doc, pods=worker_pods(cluster, release), events=events
    )


def cmd_open(cluster: Cluster, args: argparse.Namespace) -> list[str]:
    namespace, name = _stream_ref(args.stream)
    _read_stream(cluster, namespace, name)  # a typo is an error, not a dead URL
    release = find_release(cluster, args.namespace, args.ring)
    playback = f"{release.fullname}-playback"
    host, tls = None, False
    try:
        ingress = cluster.ingress(release.namespace, playback)
        rules = (ingress.get("spec") or {}).get("rules") or []
        host = rules[0].get("host") if rules else None
        tls = bool((ingress.get("spec") or {}).get("tls"))
    except LookupError:
        pass
    service, port = None, 80
    try:
        svc = cluster.service(release.namespace, playback)
        service = playback
        port = int(((svc.get("spec") or {}).get("ports") or [{}])[0].get("port", 80))
    except LookupError:
        pass
    return plugin_views.open_view(
        namespace,
        name,
        release_namespace=release.namespace,
        ingress_host=host,
        ingress_tls=tls,
        service=service,
        service_port=port,
    )


COMMANDS = {"ring": cmd_ring, "why": cmd_why, "open": cmd_open}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl camstream", description=__doc__.split("\n")[0])
    p.add_argument(
        "-n",
        "--namespace",
        default=os.environ.get("CAMSTREAM_NAMESPACE", "camstream"),
        help="the release's namespace (operator, workers, ring); default $CAMSTREAM_NAMESPACE "
        "or camstream",
    )
    p.add_argument("--ring", help="the ring ConfigMap, when a namespace holds several releases")
    p.add_argument("--kubeconfig")
    p.add_argument("--context")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ring", help="the partition table, each worker's share, handoffs in flight")
    why = sub.add_parser("why", help="explain a stream's phase")
    why.add_argument("stream", metavar="NS/NAME")
    opened = sub.add_parser("open", help="where a stream plays")
    opened.add_argument("stream", metavar="NS/NAME")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        lines = COMMANDS[args.command](Cluster(args.kubeconfig, args.context), args)
    except PluginError as exc:
        print(f"kubectl camstream: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
