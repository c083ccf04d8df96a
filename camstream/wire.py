"""The wire contract: every name that the operator, the workers and their users spell alike.

Who calls this: the operator (labels it sets, annotations and Leases it reads,
the playback path it writes into status), the worker (what it watches and
announces, the URLs it serves and asks other workers for), the shared API
client (the CameraStream resource path) and the tests. A name written here
once cannot drift between the sides; changing one is a breaking change for
clusters, dashboards and players alike. Pure: strings in, strings out.

- The CameraStream API: group, version, kind and plural
  (crds/camerastream.yaml is the schema behind them).
- Labels and annotations, with the formats of their values.
- The playback URL scheme every worker serves:
      /streams/<namespace>/<name>/               player page
      /streams/<namespace>/<name>/index.m3u8     HLS playlist (and its segments beside it)
      /streams/<namespace>/<name>/thumbnail.jpg  still, when enabled
      /api/streams/<namespace>/<name>            JSON status
"""

from __future__ import annotations

from collections.abc import Iterable

# -- the CameraStream API

API_GROUP = "camstream.io"
API_VERSION = "v1alpha1"
KIND = "CameraStream"
PLURAL = "camerastreams"
API_VERSION_PATH = f"/apis/{API_GROUP}/{API_VERSION}"  # where the API server serves the group

# -- labels and annotations

# On each CameraStream, one label per ring size P (camstream/partition_labels.py).
PARTITION_LABEL_PREFIX = "camstream.io/partition-"
HEARTBEAT_LABEL = "camstream.io/heartbeat"  # on each worker's heartbeat Lease: the ring name
CONFIRMED_ANNOTATION = "camstream.io/confirmed"  # on the Lease: handoffs the worker has live
LEAVING_ANNOTATION = "camstream.io/leaving"  # on the Lease: "true" once SIGTERM arrived
PARTITIONS_ANNOTATION = "camstream.io/partitions"  # on each worker pod: what it serves
# On a Secret: it may be used by the CameraStreams of its namespace (camera
# credentials, RTMP stream keys). A Secret without it is never used, whatever
# a CameraStream references, so a stream author cannot borrow another app's.
SECRET_USAGE_LABEL = "camstream.io/usage"
SECRET_USAGE_VALUE = "camera-credentials"


def heartbeat_lease_name(worker: str) -> str:
    """The Lease a worker renews to say it is alive (one per worker, not per stream)."""
    return f"{worker}-heartbeat"


def encode_confirmed(pairs: Iterable[tuple[int, int]]) -> str:
    """(partition, handoff id) pairs as "3.17,9.18" (sorted, so equal sets compare equal)."""
    return ",".join(f"{p}.{hid}" for p, hid in sorted(set(pairs)))


def decode_confirmed(text: str | None) -> frozenset[tuple[int, int]]:
    """The inverse of encode_confirmed; malformed items are ignored, not fatal."""
    pairs: set[tuple[int, int]] = set()
    for item in (text or "").split(","):
        p, _, hid = item.partition(".")
        if p.isdigit() and hid.isdigit():
            pairs.add((int(p), int(hid)))
    return frozenset(pairs)


def encode_ranges(partitions: Iterable[int]) -> str:
    """Sorted partitions as compact ranges: {0,1,2,5} -> "0-2,5"."""
    items = sorted(set(partitions))
    runs: list[str] = []
    start = prev = None
    for p in [*items, None]:
        if p is not None and prev is not None and p == prev + 1:
            prev = p
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = p
    return ",".join(runs)


def decode_ranges(text: str | None) -> frozenset[int]:
    out: set[int] = set()
    for run in (text or "").split(","):
        low, _, high = run.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out.update(range(int(low), int(high or low) + 1))
    return frozenset(out)


# -- the playback URL scheme (every worker answers every stream's URLs)

STREAMS_PREFIX = "/streams"
API_STREAMS = "/api/streams"
PLAYLIST = "index.m3u8"  # a stream's playlist (the master playlist when transcoded)
THUMBNAIL = "thumbnail.jpg"


def stream_path(namespace: str, name: str, relative: str = "") -> str:
    """The URL path of a stream's folder, or of a file in it."""
    return f"{STREAMS_PREFIX}/{namespace}/{name}/{relative}"


def playlist_path(namespace: str, name: str) -> str:
    """The URL path a player opens (what status.playbackPath says)."""
    return stream_path(namespace, name, PLAYLIST)


def api_stream_path(namespace: str, name: str) -> str:
    """The URL path of a stream's JSON status."""
    return f"{API_STREAMS}/{namespace}/{name}"
