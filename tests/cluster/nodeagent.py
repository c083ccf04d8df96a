"""A small local node agent: a kubelet in Python that runs pods as processes.

Called by tests/cluster/conftest.py (session fixture) and by
`python -m tests.cluster.controlplane up`. It authenticates as
system:node:<name> (client certificate), so the Node authorizer and the
NodeRestriction admission plugin check it exactly as they check a kubelet.

- registers a Ready Node (its capacity is generous on purpose: the scheduler
  should place pods here, not be the limit of a test);
- list+watches the pods kube-scheduler binds to it (fieldSelector
  spec.nodeName) and runs each pod's first container with a PodRunner
  (podrunner.py): command + args, Kubernetes env semantics, a per-pod
  kubeconfig carrying the pod's ServiceAccount token;
- gives each pod its own loopback address (127.0.N.X, N claimed per agent
  with a lock file so parallel test sessions never share addresses);
- lets tests crash a pod (`kill`) and find its process (`pid`);
- with `api_links=True`, gives each pod its own cuttable path to the API
  server (`api_link`, apilink.py); `set_pod_env` adds environment to a pod's
  next process start (a node whose clock is off: faketime.py).
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import procs
from .apilink import ApiLink
from .kubeapi import ApiError, KubeClient
from .podrunner import PodRunner, RunnerConfig, _now_iso

if TYPE_CHECKING:
    from .controlplane import ControlPlane  # controlplane's CLI imports this module

__all__ = ["NodeAgent", "claim_pod_network"]

JSON = dict[str, Any]
log = logging.getLogger("camstream.nodeagent")
HEARTBEAT_SECONDS = 5.0  # Lease renewals, as the kubelet's every 10 s
STATUS_EVERY = 4  # node status refresh every 4th heartbeat
LEASE_SECONDS = 40


def claim_pod_network(first_octet: int = 10) -> tuple[str, IO[str]]:
    """Claim a 127.0.N.0/24 block for one agent; return its prefix and the held lock.

    Keep the returned file open for as long as the addresses are in use.
    """
    for octet in range(first_octet, 250):
        handle = open(f"/tmp/camstream-podnet-{octet}.lock", "w")  # held open by the caller
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return f"127.0.{octet}.", handle
    raise RuntimeError("no free 127.0.N.0/24 block for pod addresses")


def default_base_env() -> dict[str, str]:
    """The host environment every pod process starts from (a container image's ENV)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        # Python pods: log lines reach the pod log as they are written.
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("CAMSTREAM_CACHE", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class NodeAgent:
    """Registers one Node and runs the pods bound to it. `start()`, then `stop()`."""

    @classmethod
    def on(cls, plane: ControlPlane, work_dir: Path, **options: Any) -> NodeAgent:
        """The agent of `plane`'s node, running pods under `work_dir`; `options` as __init__'s."""
        return cls(
            kubeconfig=plane.node_kubeconfig,
            server=plane.server,
            ca_cert=plane.ca_cert,
            node_name=plane.node_name,
            log_dir=plane.log_dir,
            work_dir=work_dir,
            **options,
        )

    def __init__(
        self,
        *,
        kubeconfig: Path,
        server: str,
        ca_cert: Path,
        node_name: str,
        log_dir: Path,
        work_dir: Path,
        ip_prefix: str | None = None,
        base_env: Mapping[str, str] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 10.0,
        api_links: bool = False,
    ) -> None:
        self.node_name = node_name
        self._server = server
        self._links: dict[tuple[str, str], ApiLink] = {}
        self._pod_env: dict[tuple[str, str], dict[str, str]] = {}
        self.log_dir = log_dir
        self.client = KubeClient.from_kubeconfig(kubeconfig)
        self._network_lock: IO[str] | None = None
        if ip_prefix is None:
            ip_prefix, self._network_lock = claim_pod_network()
        self.ip_prefix = ip_prefix
        self._config = RunnerConfig(
            client=self.client,
            server=server,
            ca_cert=ca_cert,
            node_name=node_name,
            log_dir=log_dir / "pods",
            work_dir=work_dir,
            base_env=dict(base_env if base_env is not None else default_base_env()),
            reaper=procs.GroupReaper(),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            server_for=self._link_server if api_links else None,
            env_for=lambda ns, name: dict(self._pod_env.get((ns, name), {})),
        )
        self._runners: dict[str, PodRunner] = {}  # by pod UID
        # UIDs whose runner has ended: late watch events about them are ignored.
        self._done: set[str] = set()
        self._free_ips = [f"{ip_prefix}{n}" for n in range(2, 255)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._log_handler: logging.Handler | None = None
        self._watch_conn: http.client.HTTPSConnection | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Register the Node and start watching for pods."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_handler = logging.FileHandler(self.log_dir / "nodeagent.log")
        self._log_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s")
        )
        log.addHandler(self._log_handler)
        log.setLevel(logging.INFO)
        self._register()
        self._renew_lease()
        for target, name in ((self._watch_loop, "watch"), (self._heartbeat, "heartbeat")):
            thread = threading.Thread(target=target, name=f"nodeagent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wait_schedulable()
        log.info("node %s up, pod addresses %sX", self.node_name, self.ip_prefix)

    def _wait_schedulable(self, timeout: float = 90.0) -> None:
        # kube-controller-manager's node-lifecycle controller lifts the
        # not-ready taint once it sees the Ready condition; until then the
        # scheduler would leave every pod Pending.
        deadline = time.monotonic() + timeout
        while True:
            node = self.client.get(f"/api/v1/nodes/{self.node_name}")
            taints = node.get("spec", {}).get("taints") or []
            if not any(t["key"] == "node.kubernetes.io/not-ready" for t in taints):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.node_name} still tainted: {taints}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop every pod process (SIGTERM, SIGKILL after 5 s); leave the API objects."""
        self._stopping.set()
        self._close_watch()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.shutdown()
        for runner in runners:
            runner.join(timeout=15)
        self._config.reaper.close()
        with self._lock:
            links = list(self._links.values())
        for link in links:
            link.close()
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
        if self._network_lock is not None:
            self._network_lock.close()
            self._network_lock = None

    def _close_watch(self) -> None:
        conn = self._watch_conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _set_watch_conn(self, conn: http.client.HTTPSConnection) -> None:
        self._watch_conn = conn
        if self._stopping.is_set():  # stop() may have run just before we connected
            conn.close()
            raise OSError("node agent stopping")

    # -- for tests ---------------------------------------------------------------

    def runner(self, name: str, namespace: str = "default") -> PodRunner | None:
        """The live runner of pod `namespace/name` (None if not on this node)."""
        with self._lock:
            for runner in self._runners.values():
                if runner.pod_name == name and runner.namespace == namespace:
                    return runner
        return None

    def pid(self, name: str, namespace: str = "default") -> int | None:
        """PID of the pod's running process, if it is running."""
        runner = self.runner(name, namespace)
        return runner.pid if runner is not None else None

    def kill(self, name: str, namespace: str = "default", sig: int = signal.SIGKILL) -> int:
        """Send `sig` (default SIGKILL: a crash) to the pod's process; return its PID."""
        pid = self.pid(name, namespace)
        if pid is None:
            raise LookupError(f"pod {namespace}/{name} has no running process on this node")
        os.kill(pid, sig)
        log.info("%s/%s: test sent signal %d to pid %d", namespace, name, sig, pid)
        return pid

    def pod_log(self, name: str, namespace: str = "default") -> Path:
        return self._config.log_dir / f"{namespace}_{name}.log"

    def api_link(self, name: str, namespace: str = "default") -> ApiLink:
        """Pod `namespace/name`'s path to the API server (agent started with api_links)."""
        with self._lock:
            return self._links[(namespace, name)]

    def set_pod_env(self, name: str, namespace: str, env: Mapping[str, str]) -> None:
        """Extra environment for the pod's next process start (kept across restarts)."""
        with self._lock:
            self._pod_env[(namespace, name)] = dict(env)

    def _link_server(self, namespace: str, name: str) -> str:
        # One link per pod name, kept when the pod is recreated (a StatefulSet's).
        with self._lock:
            link = self._links.get((namespace, name))
            if link is None:
                host, _, port = self._server.removeprefix("https://").rpartition(":")
                link = ApiLink((host, int(port)), name=f"{namespace}/{name}")
                self._links[(namespace, name)] = link
            return link.server

    # -- node ----------------------------------------------------------------------

    def _register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        try:
            self.client.create("/api/v1/nodes", node)
        except ApiError as exc:
            if exc.status != 409:  # already registered by an earlier agent
                raise
        resources = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        self.client.merge_patch(
            f"/api/v1/nodes/{self.node_name}/status",
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": self._conditions(),
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "nodeInfo": {
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                        "kernelVersion": platform.release(),
                        "osImage": "camstream test node agent",
                        "containerRuntimeVersion": "camstream-process://0",
                        "kubeletVersion": "v0.0.0-camstream-nodeagent",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
        )

    def _conditions(self) -> list[JSON]:
        now = _now_iso()
        pressure = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHas{reason}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, reason in (
                ("MemoryPressure", "SufficientMemory"),
                ("DiskPressure", "NoDiskPressure"),
                ("PIDPressure", "SufficientPID"),
            )
        ]
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "camstream node agent is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        return [*pressure, ready]

    def _renew_lease(self) -> None:
        # The kubelet's heartbeat: a Lease named after the node in kube-node-lease.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now,
        }
        try:
            self.client.merge_patch(f"{path}/{self.node_name}", {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            self.client.create(path, lease)

    def _heartbeat(self) -> None:
        beats = 0
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            beats += 1
            try:
                self._renew_lease()
                if beats % STATUS_EVERY == 0:
                    self.client.merge_patch(
                        f"/api/v1/nodes/{self.node_name}/status",
                        {"status": {"conditions": self._conditions()}},
                    )
            except (ApiError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)

    # -- pods --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self._stopping.is_set():
            try:
                listing = self.client.get("/api/v1/pods", fieldSelector=selector)
                version = listing["metadata"]["resourceVersion"]
                listed = {pod["metadata"]["uid"] for pod in listing["items"]}
                for pod in listing["items"]:
                    self._dispatch(pod)
                with self._lock:
                    vanished = [r for uid, r in self._runners.items() if uid not in listed]
                for runner in vanished:
                    runner.gone()
                while not self._stopping.is_set():
                    events = self.client.watch(
                        "/api/v1/pods", version, self._set_watch_conn, fieldSelector=selector
                    )
                    for event in events:
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            # 410 Gone: our version is too old; relist.
                            raise ApiError(int(obj.get("code", 500)), "watch", str(obj))
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            self._deleted(obj)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self._dispatch(obj)
            except (ApiError, OSError, ValueError) as exc:
                if self._stopping.is_set():
                    return
                log.warning("pod watch restarting: %s", exc)
                self._stopping.wait(1.0)

    def _dispatch(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            runner = self._runners.get(uid)
            if runner is None:
                if self._stopping.is_set() or uid in self._done:
                    return
                runner = PodRunner(self._config, pod, self._free_ips.pop(0), self._runner_done)
                self._runners[uid] = runner
                runner.start()
                return
        runner.update(pod)

    def _deleted(self, pod: JSON) -> None:
        with self._lock:
            runner = self._runners.get(pod["metadata"]["uid"])
        if runner is not None:
            runner.gone()

    def _runner_done(self, runner: PodRunner) -> None:
        with self._lock:
            self._runners.pop(runner.uid, None)
            self._done.add(runner.uid)
            # Reuse addresses last, so a recreated pod rarely gets its predecessor's.
            self._free_ips.append(runner.pod_ip)
