"""A small async JSON client for the bench's own requests, many in flight.

Who calls this: streams.py (64 concurrent creates), tracker.py (the watch of
every CameraStream and the ring ConfigMap) and probes.py (a worker's LIST and
WATCH, timed and weighed). camstream.kubeapi is the client the operator and
workers use; the bench needs what that one does not offer: a connection pool
sized to its concurrency, the raw byte count of an answer, metadata-only
watches, and errors as status codes it can count rather than exceptions.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

MERGE_PATCH = "application/merge-patch+json"
# Only metadata (labels): a fraction of the bytes of whole objects. A watch
# asks for PartialObjectMetadata, a LIST for PartialObjectMetadataList (406 otherwise).
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    size: int  # bytes of the body as received


class BenchApi:
    """One identity (client certificate or bearer token), `limit` connections."""

    def __init__(
        self,
        server: str,
        ca_cert: Path,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        token: str | None = None,
        limit: int = 64,
    ) -> None:
        context = ssl.create_default_context(cafile=str(ca_cert))
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
        headers = {"Accept": "application/json", "User-Agent": "camstream-fleet-bench"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._server = server
        self._context = context
        self._headers = headers
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._server,
                headers=self._headers,
                connector=aiohttp.TCPConnector(ssl=self._context, limit=self._limit),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        time_limit: float = 120.0,
        parse: bool = True,
    ) -> Answer:
        """One request; never raises for an HTTP error status (see Answer.status)."""
        data = None if body is None else json.dumps(body)
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self._get().request(
            method,
            path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as response:
            raw = await response.read()
            decoded = json.loads(raw) if parse and raw else {}
            return Answer(response.status, decoded, len(raw))

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, dict[str, Any], int]]:
        """(type, object, bytes) per event until the server ends the watch.

        An ERROR event (410 Gone: the version fell out of the watch cache) is
        yielded like any other; the caller decides to list again."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **(params or {}),
        }
        async with self._get().get(
            path,
            params=query,
            headers={"Accept": accept},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 60),
        ) as response:
            if response.status >= 300:
                raw = await response.read()
                yield "ERROR", {"code": response.status, "message": raw[:300].decode()}, len(raw)
                return
            buffer = b""
            # Own line splitting: aiohttp's readline stops at 64 KiB lines.
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type", "")), event.get("object") or {}, len(line)


@dataclass
class Listed:
    items: list[dict[str, Any]]  # empty unless asked to keep them
    count: int
    resource_version: str
    pages: int
    size: int  # bytes received, all pages


async def list_paged(
    api: BenchApi,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    limit: int | None = 500,
    accept: str = "application/json",
    keep: bool = True,
) -> Listed:
    """LIST in pages of `limit` (None: one unpaged request), as client-go's pager does."""
    result = Listed(items=[], count=0, resource_version="", pages=0, size=0)
    token = ""
    while True:
        query = dict(params or {})
        if limit is not None:
            query["limit"] = str(limit)
        if token:
            query["continue"] = token
        answer = await api.request("GET", path, params=query, accept=accept, time_limit=600)
        if answer.status != 200:
            raise RuntimeError(f"LIST {path}: {answer.status} {str(answer.body)[:300]}")
        result.pages += 1
        result.size += answer.size
        items = answer.body.get("items") or []
        result.count += len(items)
        if keep:
            result.items.extend(items)
        meta = answer.body.get("metadata") or {}
        result.resource_version = str(meta.get("resourceVersion", ""))
        token = str(meta.get("continue") or "")
        if not token:
            return result
