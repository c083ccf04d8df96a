"""Which object store recordings go to, from the environment, parsed once.

Who calls this: the worker's entry points (standalone `camstream run`, the
cluster worker) and the operator's janitor. The chart sets these from its
`recording.store` values and a Secret; a CameraStream never names a store.

    CAMSTREAM_RECORDING_STORE        s3 | folder | off (default: folder in
                                     standalone mode, off in a cluster)
    CAMSTREAM_RECORDING_S3_BUCKET    bucket (s3: required)
    CAMSTREAM_RECORDING_S3_ENDPOINT  http(s)://host:port of an S3-compatible
                                     store (empty: AWS's own for the region)
    CAMSTREAM_RECORDING_S3_REGION    default us-east-1
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   credentials (from a Secret)
    CAMSTREAM_RECORDING_DIR          folder: the root folder

A bad value names its variable (camstream.settings.SettingError).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from camstream import settings
from camstream.storage.base import ObjectStore


@dataclass(frozen=True, slots=True)
class StoreConfig:
    kind: Literal["s3", "folder", "off"]
    folder: Path | None = None
    bucket: str = ""
    endpoint: str | None = None
    region: str = "us-east-1"
    # Kept out of repr: a config printed in a log must not show them.
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.kind != "off"


def from_env(
    environ: Mapping[str, str] | None = None, *, default_folder: Path | None = None
) -> StoreConfig:
    """`default_folder`: standalone mode records to a folder unless told otherwise."""
    env = os.environ if environ is None else environ
    default_kind = "folder" if default_folder is not None else "off"
    kind = env.get("CAMSTREAM_RECORDING_STORE", default_kind) or default_kind
    if kind not in ("s3", "folder", "off"):
        raise settings.SettingError("CAMSTREAM_RECORDING_STORE", kind, "not one of s3, folder, off")
    if kind == "folder":
        folder = settings.from_env(
            "CAMSTREAM_RECORDING_DIR", settings.path, default_folder, environ=env
        )
        if folder is None:
            raise settings.SettingError("CAMSTREAM_RECORDING_DIR", "", "empty: a path is needed")
        return StoreConfig(kind="folder", folder=folder)
    if kind == "s3":
        bucket = env.get("CAMSTREAM_RECORDING_S3_BUCKET", "")
        if not bucket:
            raise settings.SettingError(
                "CAMSTREAM_RECORDING_S3_BUCKET", "", "empty: an s3 store needs a bucket"
            )
        endpoint = env.get("CAMSTREAM_RECORDING_S3_ENDPOINT") or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            # Not echoed whole: an endpoint URL may carry user:password@.
            raise settings.SettingError(
                "CAMSTREAM_RECORDING_S3_ENDPOINT", "(hidden)", "not an http:// or https:// URL"
            )
        return StoreConfig(
            kind="s3",
            bucket=bucket,
            endpoint=endpoint,
            region=env.get("CAMSTREAM_RECORDING_S3_REGION") or "us-east-1",
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        )
    return StoreConfig(kind="off")


async def open_store(config: StoreConfig) -> ObjectStore | None:
    """The configured store, ready to use (close it when done); None when recording is off."""
    if config.kind == "folder":
        from camstream.storage.folder import FolderStore

        assert config.folder is not None
        return FolderStore(config.folder)
    if config.kind == "s3":
        from camstream.storage.s3 import S3Store

        return await S3Store(
            endpoint=config.endpoint,
            bucket=config.bucket,
            region=config.region,
            access_key=config.access_key,
            secret_key=config.secret_key,
        ).start()
    return None
