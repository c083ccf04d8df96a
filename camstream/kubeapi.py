"""The only door to the Kubernetes API for the operator and the worker: a small async REST client.

Who calls this: every operator module that reads or writes cluster state
(ringstore, leader, reconcile, the handlers; kopf has its own client for the
CameraStream watch it runs) and the worker's cluster agent (informer,
heartbeat, status reports, Secrets). It lives in the shared package because
the two components may not import each other; nothing else in either imports
aiohttp for the API or the kubernetes package.

Why not the `kubernetes` client: it is synchronous and the operator lives in
kopf's event loop. We use it only to read the kubeconfig (or the in-cluster
ServiceAccount) into host, TLS files and token; requests go through aiohttp.

Exceptions, all raised from here and chained (`raise ... from exc`), with
server messages truncated so an untrusted payload never floods a log:

    KubeError                 anything that went wrong talking to the API
    ├── TransportError        no answer: connection refused, TLS, timeout
    └── ApiError              the API server answered with an error status
        ├── NotFound          404
        ├── Conflict          409 (stale resourceVersion, or already exists)
        ├── Gone              410 (watch resourceVersion too old)
        ├── Forbidden         401/403 (RBAC: the chart's rules are too narrow)
        └── Invalid           422 (schema or CEL validation refused the object)
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from camstream import retry, wire

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Metadata only (labels, names, versions; no spec or status): what a controller
# that decides from labels alone needs, at a fraction of the bytes.
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_MAX_MESSAGE = 300


class KubeError(Exception):
    """Talking to the Kubernetes API failed."""


class TransportError(KubeError):
    """The API server could not be reached or did not answer in time."""


class ApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message[:_MAX_MESSAGE]}")
        self.status = status
        self.reason = reason
        self.message = message[:_MAX_MESSAGE]


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass


class Forbidden(ApiError):
    pass


class Invalid(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the API server is and how to prove who we are (no token in repr)."""

    server: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    token: str | None
    verify: bool = True

    def __repr__(self) -> str:
        return f"Credentials(server={self.server!r})"


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """From KUBECONFIG (or the given file), else the in-cluster ServiceAccount."""
    from kubernetes import client, config  # only for reading configuration

    cfg = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_kube_config(config_file=path, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    # The client stores the token under "BearerToken" (recent releases) or
    # "authorization" (older ones), with or without the "Bearer " prefix.
    keys = cfg.api_key or {}
    token = keys.get("BearerToken") or keys.get("authorization") or None
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return Credentials(
        server=cfg.host.rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify=bool(cfg.verify_ssl),
    )


# Called with each answer's Date header and the monotonic times the request was
# sent and its answer arrived (the worker reads the cluster's clock from it).
ResponseHook = Callable[[str | None, float, float], None]


class KubeApi:
    """Async JSON requests against one API server; one instance per process."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 15.0,
        connections: int = 32,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._creds = credentials
        self._timeout = timeout
        self._connections = connections
        self._on_response = on_response
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._creds.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self._creds.ca_file)
        if not self._creds.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self._creds.cert_file and self._creds.key_file:
            ctx.load_cert_chain(self._creds.cert_file, self._creds.key_file)
        return ctx

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Accept": "application/json"}
            if self._creds.token:
                headers["Authorization"] = f"Bearer {self._creds.token}"
            self._session = aiohttp.ClientSession(
                base_url=self._creds.server,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=self._connections),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        try:
            sent = time.monotonic()
            async with self._get_session().request(
                method,
                path,
                params=params,
                data=data,
                headers=headers,
                timeout=self._request_timeout(),
            ) as response:
                if self._on_response is not None:
                    self._on_response(response.headers.get("Date"), sent, time.monotonic())
                text = await response.text()
                if response.status >= 400:
                    raise _api_error(response.status, text)
                return json.loads(text) if text else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}") from exc

    def _request_timeout(self) -> aiohttp.ClientTimeout:
        # No total: waiting for a pooled connection is not the server being
        # slow (callers bound their own concurrency). Connecting and each read
        # are bounded, so a dead server is still noticed.
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout, sock_read=self._timeout
        )

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def delete(self, path: str, *, resource_version: str | None = None) -> dict[str, Any]:
        """DELETE, optionally only if nobody changed the object since `resource_version`."""
        body = None
        if resource_version is not None:
            body = {"preconditions": {"resourceVersion": resource_version}}
        return await self.request("DELETE", path, body=body)

    async def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        """One LIST request (one page when `limit` is set; its metadata.continue leads on)."""
        params = _selectors(label_selector, field_selector)
        if limit is not None:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        accept = PARTIAL_METADATA_LIST if metadata_only else None
        return await self.request("GET", path, params=params, accept=accept)

    async def list_all(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        metadata_only: bool = False,
    ) -> AsyncIterator[tuple[builtins.list[dict[str, Any]], str]]:
        """A paged LIST: yields (items of a page, resourceVersion of the list) page by page.

        Pages keep each response small (a 100k-object list is ~260 MB in one
        piece) and let the caller yield to the event loop between them. A
        continue token that expired (410) restarts the list from the top.
        """
        token: str | None = None
        while True:
            try:
                page = await self.list(
                    path,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    limit=page_size,
                    continue_token=token,
                    metadata_only=metadata_only,
                )
            except Gone:
                if token is None:
                    raise
                token = None  # the snapshot expired between pages: start over
                continue
            meta = page.get("metadata") or {}
            yield list(page.get("items") or []), str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or None
            if token is None:
                return

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: optimistic concurrency through body.metadata.resourceVersion."""
        return await self.request("PUT", path, body=body)

    async def patch(
        self, path: str, body: Any, *, content_type: str = MERGE_PATCH
    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        timeout_seconds: int = 240,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) from a watch starting after `resource_version`.

        Ends when the server closes the stream (its timeout); raises Gone when
        the version is too old, so the caller re-lists. BOOKMARK events carry
        only a newer resourceVersion to resume from.
        """
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **_selectors(label_selector, field_selector),
        }
        headers = {"Accept": PARTIAL_METADATA} if metadata_only else {}
        try:
            async with self._get_session().get(
                path,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=timeout_seconds + 60
                ),
            ) as response:
                if response.status >= 400:
                    raise _api_error(response.status, await response.text())
                # Our own line splitting: aiohttp's readline caps lines at 64 KiB,
                # and a ring ConfigMap for a large P is bigger than that.
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event.get("type", ""), event.get("object", {})
                        if kind == "ERROR":
                            raise _api_error(int(obj.get("code", 500)), json.dumps(obj))
                        yield kind, obj
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"WATCH {path}: {type(exc).__name__}") from exc


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _api_error(status: int, text: str) -> ApiError:
    try:
        payload = json.loads(text)
        reason, message = str(payload.get("reason", "")), str(payload.get("message", ""))
    except (ValueError, AttributeError):
        reason, message = "", text
    return _BY_STATUS.get(status, ApiError)(status, reason, message)


# Paths, in one place so a typo cannot hide in a handler. Every name is one
# path segment, percent-quoted: a name that is not a Kubernetes name (a Secret
# reference written as "../../kube-system/secrets/x" once made a worker read
# another namespace's Secret) stays inside its segment, and "." or ".." (which
# the URL library would resolve away, quoted or not) is refused outright.


class BadName(ValueError):
    """A name that cannot be one segment of an API path (empty, ".", ".." or not text)."""


def segment(name: str) -> str:
    """`name` as one path segment: percent-quoted, never "", "." or ".."."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise BadName(f"{name!r} cannot name a Kubernetes object")
    try:
        return quote(name, safe="")
    except UnicodeEncodeError:  # a lone surrogate, as JSON may carry
        raise BadName("a name that is not valid text cannot name a Kubernetes object") from None


def configmap_path(namespace: str, name: str = "") -> str:
    return _join(f"/api/v1/namespaces/{segment(namespace)}/configmaps", name)


def pod_path(namespace: str, name: str = "") -> str:
    return _join(f"/api/v1/namespaces/{segment(namespace)}/pods", name)


def event_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/events"


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}"


def lease_path(namespace: str, name: str = "") -> str:
    return _join(f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases", name)


def statefulset_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{segment(namespace)}/statefulsets/{segment(name)}"


def stream_path(namespace: str | None = None, name: str = "", *, status: bool = False) -> str:
    base = wire.API_VERSION_PATH
    if namespace is None:
        return f"{base}/{wire.PLURAL}"
    path = _join(f"{base}/namespaces/{segment(namespace)}/{wire.PLURAL}", name)
    return f"{path}/status" if status else path


def _join(base: str, name: str) -> str:
    """`base`, or `base/<name>` for one named object (an empty name means the collection)."""
    return f"{base}/{segment(name)}" if name else base


# Between retries of a failed request: 1, 2, 4, 8, then 10 seconds.
REQUEST_RETRY = retry.Backoff(initial=1.0, cap=10.0, jitter=0.0)


async def sleep_backoff(attempt: int) -> None:
    """Wait before retry number `attempt` of a failed request."""
    await asyncio.sleep(REQUEST_RETRY.delay(attempt))
