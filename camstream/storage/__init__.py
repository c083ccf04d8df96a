"""Object storage for recordings: one small interface, one module per backend.

Who calls this: the worker's uploader (puts recorded groups), its HTTP
recordings routes (lists and reads byte ranges for playback from any worker)
and the operator's retention janitor (lists and deletes), through
`ObjectStore` (base.py). Backends: `s3` (any S3-compatible store, through
aiobotocore: the default for clusters) and `folder` (a local folder:
standalone mode). `config` turns the environment into a `StoreConfig` and
opens the backend it names.

Errors, one tree for this boundary; each backend maps its own errors to it
in one place, chained, and never puts an endpoint's credentials in a message:

    StorageError
     ├── StoreUnavailable   the store cannot be reached or answered 5xx: retry later
     ├── ObjectMissing      no such object (or range beyond it)
     └── StoreRefused       the store said no for good (credentials, permissions, no bucket)
"""

from __future__ import annotations


class StorageError(Exception):
    """Anything that went wrong talking to the object store."""


class StoreUnavailable(StorageError):
    """The store is down, unreachable or overloaded: the same request may work later."""


class ObjectMissing(StorageError):
    """The object (or the byte range asked for) does not exist."""


class StoreRefused(StorageError):
    """The store refuses the request for good (credentials, permissions, a missing bucket)."""


__all__ = ["ObjectMissing", "StorageError", "StoreRefused", "StoreUnavailable"]
