"""Turn a Pod's first container into a local process's argv and environment.

Called by nodeagent.py when it starts (or restarts) a pod's process. Pure
logic apart from the `lookup` callable that fetches Secret/ConfigMap keys:
it follows Kubernetes' rules for `env` (in order, `$(VAR)` expansion against
earlier entries, `$$` escaping), `valueFrom.fieldRef`, `secretKeyRef`,
`configMapKeyRef` and `envFrom`, and expands `$(VAR)` in command and args.
The image is ignored: a pod runs its command on this machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ContainerPlan", "PodSpecError", "expand", "field_value", "plan_container"]

JSON = dict[str, Any]
# (kind "secret" | "configmap", namespace, name) -> data; None when absent.
Lookup = Callable[[str, str, str], Mapping[str, str] | None]

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class PodSpecError(ValueError):
    """The pod cannot be run here (no command, missing required reference)."""


@dataclass(frozen=True)
class ContainerPlan:
    """What to exec for a container."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    working_dir: str | None


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` is `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(replace, text)


def field_value(pod: JSON, path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for this pod."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_REF.match(path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    raise PodSpecError(f"unsupported fieldRef.fieldPath {path!r}")


def _ref_value(ref: JSON, kind: str, namespace: str, lookup: Lookup) -> str | None:
    data = lookup(kind, namespace, ref["name"])
    value = None if data is None else data.get(ref["key"])
    if value is None and not ref.get("optional", False):
        # Names only, never values: this text reaches pod status and logs.
        raise PodSpecError(f"{kind} {ref['name']!r} key {ref['key']!r} not found")
    return value


def plan_container(
    pod: JSON,
    *,
    pod_ip: str,
    host_ip: str,
    base_env: Mapping[str, str],
    lookup: Lookup,
) -> ContainerPlan:
    """argv, environment and working directory for the pod's first container.

    `base_env` comes first (PATH, POD_NAME, KUBECONFIG, ...); `envFrom` and
    then `env` entries override it, as in a container runtime.
    """
    namespace = pod["metadata"]["namespace"]
    container = pod["spec"]["containers"][0]
    env: dict[str, str] = dict(base_env)

    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            if key in source:
                data = lookup(kind, namespace, source[key]["name"])
                if data is None and not source[key].get("optional", False):
                    raise PodSpecError(f"{kind} {source[key]['name']!r} not found")
                for key_name, key_value in (data or {}).items():
                    env[prefix + key_name] = key_value

    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(entry["value"], env)
            continue
        source = entry.get("valueFrom", {})
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "secretKeyRef" in source:
            value = _ref_value(source["secretKeyRef"], "secret", namespace, lookup)
        elif "configMapKeyRef" in source:
            value = _ref_value(source["configMapKeyRef"], "configmap", namespace, lookup)
        elif not source:
            value = ""  # `- name: X` with neither value nor valueFrom means empty
        else:
            raise PodSpecError(f"env {name!r}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value

    command = [expand(part, env) for part in container.get("command", [])]
    args = [expand(part, env) for part in container.get("args", [])]
    argv = tuple(command + args)
    if not command:
        # No image entrypoint exists here to fall back on.
        raise PodSpecError(f"container {container['name']!r} has no command")
    return ContainerPlan(
        name=container["name"],
        argv=argv,
        env=env,
        working_dir=container.get("workingDir"),
    )
