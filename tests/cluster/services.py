"""Loopback stand-ins for the worker Services, as kube-proxy would route them.

The node agent gives each pod its own loopback address but runs no
kube-proxy, so the end-to-end tests put these in front of the workers: each
new request or connection goes to a worker pod (Ready ones first, as the
Service's endpoints would list them), and the worker forwards it to the
stream's owner itself.

- `PlaybackService`: HTTP, one GET at a time (the playback Service).
- `IngestService`: TCP, a whole connection spliced to one pod (the RTMP
  ingest Service); when that pod goes away the connection closes, as it would
  through a real Service, and the camera reconnects.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from .apilink import splice
from .conftest import Cluster

LOOPBACK = "127.0.0.1"


class _Endpoints:
    """The worker pods' addresses, Ready first, refreshed every second."""

    def __init__(self, cluster: Cluster, namespace: str, app: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._app = app
        self.ips: list[str] = []
        self.ready: list[str] = []
        self._stop = threading.Event()

    def start(self) -> None:
        self.refresh()
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.refresh()
            except Exception:
                continue

    def refresh(self) -> None:
        pods = self._cluster.kubectl_json(
            "get", "pods", "-n", self._namespace, "-l", f"app={self._app}"
        )
        ready, other = [], []
        for pod in pods["items"]:
            ip = pod.get("status", {}).get("podIP")
            if not ip or pod["metadata"].get("deletionTimestamp"):
                continue
            conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            (ready if conds.get("Ready") == "True" else other).append(ip)
        self.ips = ready + other
        self.ready = ready


class PlaybackService:
    """HTTP GETs on `url` go to a worker pod's port `port`."""

    def __init__(self, cluster: Cluster, namespace: str, app: str, port: int = 8080) -> None:
        self._endpoints = _Endpoints(cluster, namespace, app)
        endpoints = self._endpoints

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                for ip in list(endpoints.ips):
                    try:
                        with urllib.request.urlopen(
                            f"http://{ip}:{port}{self.path}", timeout=6.0
                        ) as r:
                            body = r.read()
                            self.send_response(r.status)
                            for name, value in r.headers.items():
                                if name.lower() not in (
                                    "content-length",
                                    "transfer-encoding",
                                    "connection",
                                    "date",
                                    "server",
                                ):
                                    self.send_header(name, value)
                            self.send_header("Content-Length", str(len(body)))
                            self.end_headers()
                            self.wfile.write(body)
                            return
                    except (urllib.error.URLError, OSError, TimeoutError):
                        continue
                with contextlib.suppress(OSError):  # the watcher may have given up
                    self.send_error(503)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._endpoints.start()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._endpoints.stop()
        self._server.shutdown()
        self._server.server_close()


class IngestService:
    """TCP connections to (LOOPBACK, `port`) are spliced to a worker pod's `target_port`."""

    def __init__(self, cluster: Cluster, namespace: str, app: str, target_port: int) -> None:
        self._endpoints = _Endpoints(cluster, namespace, app)
        self._target_port = target_port
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self._endpoints.start()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def ready_endpoints(self) -> list[str]:
        """The Ready pods' addresses as last seen (refreshed every second)."""
        return list(self._endpoints.ready)

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._endpoints.stop()
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        for ip in list(self._endpoints.ips):
            try:
                upstream = socket.create_connection((ip, self._target_port), timeout=3.0)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            self._pipe(upstream, client)
            return
        client.close()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            splice(source, sink)
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
