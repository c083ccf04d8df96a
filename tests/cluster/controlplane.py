"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler as local processes.

Called by tests/cluster/conftest.py (the session fixture) and by developers:

    .venv/bin/python -m tests.cluster.controlplane up    # prints export KUBECONFIG=...

The binaries come from scripts/build-controlplane.sh (built from the official
Go modules, cached by version). Every component listens on 127.0.0.1 only, on
ports picked free at start. Security is on as in a real cluster: TLS with a
throw-away CA (pki.py), client-certificate identities per component, Node and
RBAC authorization, NodeRestriction admission, bound service-account tokens.
Each component logs to <log_dir>/<component>.log.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .kubeconfig import write_kubeconfig
from .pki import Pki, create_pki

__all__ = ["ControlPlane", "build_binaries", "free_port"]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-controlplane.sh"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: API data only, nothing routes to it
# kube-controller-manager controllers the suite relies on; the rest (cloud,
# CSR signing, volumes, taint eviction, ...) would only add load.
CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "statefulset-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
    "clusterrole-aggregation-controller",
    # Removes the not-ready taint the TaintNodesByCondition admission plugin
    # puts on every new Node (a node may not edit its own taints), and watches
    # the node agent's heartbeats as it would a kubelet's.
    "node-lifecycle-controller",
)
START_TIMEOUT = 120.0  # generous: two shared cores, other builds beside us


def build_binaries() -> Path:
    """Run the (cached, idempotent) build script and return the bin directory."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler.

    `start()` returns once the apiserver's /readyz is OK and the controller
    manager and scheduler report healthy; `stop()` stops them in reverse order.
    `kubeconfig` is the admin's (system:masters); `node_kubeconfig` is the
    node agent's (system:node:<node_name>, limited by the Node authorizer).

    The fleet benchmark (bench/fleet) adds kube-apiserver flags (an audit log,
    to attribute requests by user) and runs without the controller manager
    and scheduler (`controllers=False`): its pods are API objects only, and
    the node lifecycle controller would mark them NotReady. The tests keep
    the defaults.
    """

    bin_dir: Path
    work_dir: Path
    log_dir: Path
    node_name: str = "camstream-node-1"
    server: str = ""
    apiserver_flags: tuple[str, ...] = ()  # appended to kube-apiserver's command line
    controllers: bool = True  # start kube-controller-manager and kube-scheduler
    etcd_url: str = field(init=False, default="")
    kubeconfig: Path = field(init=False)
    node_kubeconfig: Path = field(init=False)
    pki: Pki = field(init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # How each component was started and is checked, to start it again the same way.
    _argv: dict[str, list[str]] = field(default_factory=dict)
    _health: dict[str, tuple[str, ssl.SSLContext | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.node_kubeconfig = self.work_dir / "node.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.pki.ca_cert

    def log_path(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Start every component and wait until the cluster serves requests."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stop every started component, newest first (scheduler ... etcd).

        `grace`: seconds each gets after SIGTERM (a throw-away cluster needs little).
        """
        for name in reversed(list(self._procs)):
            procs.stop(self._procs.pop(name), grace=grace)

    def _start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pki = create_pki(
            self.work_dir / "pki",
            {
                "admin": "/O=system:masters/CN=kubernetes-admin",
                "controller-manager": "/CN=system:kube-controller-manager",
                "scheduler": "/CN=system:kube-scheduler",
                "node": f"/O=system:nodes/CN=system:node:{self.node_name}",
            },
            SERVICE_IP,
        )
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfigs()
        if self.controllers:
            self._start_controller_manager()
            self._start_scheduler()

    # -- one component at a time (control-plane outages in the churn suite) --

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stop one component (SIGTERM, or SIGKILL with `kill`); its ports and data stay."""
        proc = self._procs[name]
        if kill and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        procs.stop(proc)
        with open(self.log_path(name), "a") as log:
            log.write(f"=== test bed: {name} stopped (exit {proc.returncode})\n")

    def start_component(self, name: str) -> None:
        """Start a stopped component again with its original flags, ports and data dir.

        Returns once it is healthy again. Call it from a long-lived thread (the
        test's): the child is tied to the thread that starts it (procs.spawn).
        """
        if self._procs[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        with open(self.log_path(name), "a") as log:
            log.write(f"=== test bed: {name} started again\n")
        self._procs[name] = procs.spawn(self._argv[name], self.log_path(name))
        url, context = self._health[name]
        self._wait_healthy(name, url, context)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = procs.spawn(argv, self.log_path(name))
        self._procs[name] = proc
        self._argv[name] = argv
        return proc

    def _wait_healthy(self, name: str, url: str, context: ssl.SSLContext | None) -> None:
        self._health[name] = (url, context)
        proc = self._procs[name]

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; log tail:\n"
                    + procs.tail(self.log_path(name))
                )
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            procs.wait_until(healthy, START_TIMEOUT, what=f"{name} at {url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; log tail:\n{procs.tail(self.log_path(name))}") from None

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                # Test data is thrown away: skip fsync, the main cost on a busy disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_healthy("etcd", f"{self.etcd_url}/health", None)

    def _start_apiserver(self) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                *self.apiserver_flags,
            ],
        )
        context = self._admin_ssl_context()
        self._wait_healthy("kube-apiserver", f"{self.server}/readyz", context)

    def _admin_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        admin = self.pki.clients["admin"]
        context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    def _write_kubeconfigs(self) -> None:
        for name, path, user in (
            ("admin", self.kubeconfig, "kubernetes-admin"),
            ("node", self.node_kubeconfig, f"system:node:{self.node_name}"),
            ("controller-manager", self.work_dir / "controller-manager.kubeconfig", "kcm"),
            ("scheduler", self.work_dir / "scheduler.kubeconfig", "scheduler"),
        ):
            cert = self.pki.clients[name]
            write_kubeconfig(
                path,
                self.server,
                self.pki.ca_cert,
                user=user,
                client_cert=cert.cert,
                client_key=cert.key,
            )

    def _delegated_auth_flags(self, kubeconfig: Path, port: int, name: str) -> list[str]:
        # The components serve /healthz on their own loopback port; delegated
        # authn/authz lets them do so with the same kubeconfig they run with.
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.work_dir / (name + '-certs')}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _start_controller_manager(self) -> None:
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                *self._delegated_auth_flags(
                    self.work_dir / "controller-manager.kubeconfig", port, "controller-manager"
                ),
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller acts with its own ServiceAccount's token, as
                # kubeadm clusters do, so the bootstrap RBAC roles are exercised.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        insecure = ssl._create_unverified_context()  # self-signed healthz cert
        self._wait_healthy("kube-controller-manager", f"https://127.0.0.1:{port}/healthz", insecure)

    def _start_scheduler(self) -> None:
        port = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                *self._delegated_auth_flags(
                    self.work_dir / "scheduler.kubeconfig", port, "scheduler"
                ),
            ],
        )
        insecure = ssl._create_unverified_context()
        self._wait_healthy("kube-scheduler", f"https://127.0.0.1:{port}/healthz", insecure)

    # -- helpers for tests -------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run /usr/bin/kubectl as the admin; raise with stderr when `check` fails."""
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def kubectl_json(self, *args: str) -> dict:  # type: ignore[type-arg]
        """`kubectl get ... -o json`, parsed."""
        return dict(json.loads(self.kubectl(*args, "-o", "json").stdout))

    def processes(self) -> dict[str, int]:
        """PIDs of the running components, by name."""
        return {name: proc.pid for name, proc in self._procs.items()}


def _up(args: argparse.Namespace) -> int:
    from .nodeagent import NodeAgent  # only the CLI needs both at once

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="camstream-cluster-"))
    plane = ControlPlane(bin_dir=build_binaries(), work_dir=work, log_dir=work / "logs")
    plane.start()
    agent = NodeAgent.on(plane, work / "pods")
    agent.start()
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"# logs in {plane.log_dir}; Ctrl-C stops the cluster", file=sys.stderr)
    sys.stdout.flush()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        agent.stop()
        plane.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and node agent in the foreground")
    up.add_argument("--work-dir", help="state, certificates and logs (default: a new temp dir)")
    sub.add_parser("build", help="build (or find cached) binaries and print their directory")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build_binaries())
        return 0
    return _up(args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
