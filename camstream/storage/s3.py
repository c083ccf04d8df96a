"""An S3-compatible object store through aiobotocore: recordings in a cluster.

Who calls this: config.open_store when CAMSTREAM_RECORDING_STORE=s3. Bucket,
endpoint, region and credentials come from the chart (a Secret), never from
a CameraStream. Any S3 API works (AWS S3, MinIO, Ceph RGW, SeaweedFS, the
tests' store); path-style addressing, so an in-cluster service name works as
the endpoint.

Every botocore and aiohttp error is mapped to the package's tree in
`_mapped` (one place), chained; messages carry the S3 error code and the
operation, never the endpoint, the bucket's credentials or a signed URL.
botocore's own retries are off: the uploader has its own backoff and spool,
and a viewer's range request must fail fast rather than hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from camstream.storage import ObjectMissing, StorageError, StoreRefused, StoreUnavailable
from camstream.storage.base import ObjectInfo

_MISSING = {"NoSuchKey", "404", "NotFound", "InvalidRange"}
_REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "403",
    "AllAccessDisabled",
    "InvalidBucketName",
}
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


@contextlib.contextmanager
def _mapped(operation: str) -> Iterator[None]:
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING or status == 404 or status == 416:
            raise ObjectMissing(f"{operation}: {code}") from exc
        if code in _REFUSED or status in (401, 403):
            raise StoreRefused(f"{operation}: {code}") from exc
        raise StoreUnavailable(f"{operation}: {code}") from exc
    except (
        botocore.exceptions.BotoCoreError,
        aiohttp.ClientError,
        TimeoutError,
        OSError,
    ) as exc:
        # botocore's messages quote the endpoint URL: the type name says enough.
        raise StoreUnavailable(f"{operation}: {type(exc).__name__}") from exc


class S3Store:
    def __init__(
        self,
        *,
        endpoint: str | None,
        bucket: str,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        connect_timeout: float = 3.0,
        read_timeout: float = 15.0,
    ) -> None:
        self.bucket = bucket
        self._options: dict[str, Any] = {
            "endpoint_url": endpoint or None,
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": AioConfig(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": "path"},
                max_pool_connections=32,
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> S3Store:
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", **self._options)
        )
        return self

    async def create_bucket(self) -> None:
        """Make the bucket if it is missing (tests and first installs)."""
        with _mapped("create bucket"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as exc:
                if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) != 404:
                    raise
            await self._client.create_bucket(Bucket=self.bucket)

    async def put(self, key: str, data: bytes) -> None:
        with _mapped("put"):
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        with _mapped("get"):
            response = await self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
            async with response["Body"] as body:
                data: bytes = await body.read()
        if len(data) != end - start:
            raise ObjectMissing("get: range beyond the end of the object")
        return data

    async def objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = aiter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            with _mapped("list"):
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    return
            for item in page.get("Contents", ()):
                yield ObjectInfo(str(item["Key"]), int(item["Size"]))

    async def folders(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        with _mapped("list"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                found.extend(str(p["Prefix"]) for p in page.get("CommonPrefixes", ()))
        return sorted(found)

    async def delete(self, keys: list[str]) -> None:
        for at in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[at : at + DELETE_BATCH]]
            with _mapped("delete"):
                answer = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = answer.get("Errors") or []
            if errors:
                raise StorageError(f"delete: {errors[0].get('Code', 'unknown')} ({len(errors)})")

    async def close(self) -> None:
        await self._stack.aclose()
