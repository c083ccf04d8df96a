"""A minimal JSON client for the Kubernetes API, for the node agent.

Called by nodeagent.py (and usable by cluster tests). Resources stay plain
dicts, as on the wire: the node agent reads a few fields and writes status
patches, and skipping the `kubernetes` package's model (de)serialisation keeps
its CPU cost low on a two-core machine. Authenticates with the client
certificate or token of a kubeconfig file; verifies the server with its CA.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ApiError", "KubeClient"]

JSON = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        # Truncate: messages may echo request content back.
        super().__init__(f"{status} {reason}: {message[:300]}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class KubeClient:
    """One API server, one identity. Thread-safe: a connection per request."""

    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        config = yaml.safe_load(path.read_text())
        current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == current["context"]["cluster"])
        user = next(u for u in config["users"] if u["name"] == current["context"]["user"])
        url = urllib.parse.urlsplit(cluster["cluster"]["server"])
        context = ssl.create_default_context(cafile=cluster["cluster"]["certificate-authority"])
        credentials = user["user"]
        if "client-certificate" in credentials:
            context.load_cert_chain(credentials["client-certificate"], credentials["client-key"])
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 443,
            context=context,
            token=credentials.get("token"),
        )

    def _connect(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        """One request; the decoded JSON answer, or ApiError."""
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        conn = self._connect(timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers=self._headers(content_type))
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        decoded: JSON = json.loads(data) if data else {}
        if response.status >= 300:
            raise ApiError(
                response.status,
                str(decoded.get("reason", response.reason)),
                str(decoded.get("message", data[:300])),
            )
        return decoded

    def get(self, path: str, **params: str) -> JSON:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: JSON) -> JSON:
        # JSON merge patch: lists are replaced whole, which is what a status
        # writer wants (conditions and container statuses computed in full).
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(
        self,
        path: str,
        resource_version: str,
        on_connect: Callable[[http.client.HTTPSConnection], None] | None = None,
        **params: str,
    ) -> Iterator[JSON]:
        """Watch events from `resource_version` until the server ends the watch.

        `on_connect` receives the connection, so another thread can close it
        to end the watch at once (an open watch delays apiserver shutdown)."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
            **params,
        }
        conn = self._connect(timeout=300)
        if on_connect is not None:
            conn.connect()  # so the socket exists when the callback gets it
            on_connect(conn)
        try:
            conn.request(
                "GET",
                f"{path}?{urllib.parse.urlencode(query)}",
                headers=self._headers("application/json"),
            )
            response = conn.getresponse()
            if response.status >= 300:
                data = response.read()
                message = data[:300].decode(errors="replace")
                raise ApiError(response.status, response.reason, message)
            # Events are newline-delimited JSON objects on a chunked stream.
            for line in response:
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
