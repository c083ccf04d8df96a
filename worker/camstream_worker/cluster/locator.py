"""OwnerLocator for the HTTP server: which worker serves a stream, from the ring.

Who calls this: http_server.py (through the OwnerLocator protocol of
camstream_worker/state.py) for each playback request, to forward it to the
owner when that is another worker. The answer comes from the ring document
the agent already holds (serving table + pod IPs), so no API call is made.
"""

from __future__ import annotations

from collections.abc import Callable

from camstream import ring
from camstream.handoff import RingDoc
from camstream.spec import StreamKey


class RingLocator:
    def __init__(self, me: str, http_port: int, doc: Callable[[], RingDoc | None]) -> None:
        self._me = me
        self._port = http_port
        self._doc = doc

    def owner_url(self, key: StreamKey) -> str | None:
        doc = self._doc()
        if doc is None:
            return None
        owner = doc.serving[
            ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
        ]
        if not owner or owner == self._me:
            return None
        address = doc.addresses.get(owner)
        return f"http://{address}:{self._port}" if address else None
