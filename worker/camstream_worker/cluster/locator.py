"""OwnerLocator for the HTTP server: which worker serves a stream, from the ring.

Who calls this: servers/http/server.py (through the OwnerLocator protocol of
camstream_worker/state.py) for each playback request, to forward it to the
owner when that is another worker; the RTMP front (servers/rtmp/front.py)
with `owner_rtmp` and `is_mine`, to relay a publisher to the owner and drop
the relay once the ring moves the stream. The answer comes from the ring document
the agent already holds (serving table + pod IPs), so no API call is made.
"""

from __future__ import annotations

from collections.abc import Callable

from camstream import ring
from camstream.handoff import RingDoc, handoffs_to
from camstream.spec import StreamKey


class RingLocator:
    """Where another worker serves a stream; None when it is this one or unknown.

    All workers listen on the same ports (one StatefulSet), so the owner's pod
    IP from the ring document plus our own port numbers make its address.
    """

    def __init__(
        self,
        me: str,
        http_port: int,
        doc: Callable[[], RingDoc | None],
        *,
        rtmp_port: int | None = None,
    ) -> None:
        self._me = me
        self._port = http_port
        self._rtmp_port = rtmp_port
        self._doc = doc

    def owner_address(self, key: StreamKey) -> str | None:
        """The owning worker's pod IP, if that is another worker that is up."""
        doc = self._doc()
        if doc is None:
            return None
        owner = doc.serving[
            ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
        ]
        if not owner or owner == self._me:
            return None
        return doc.addresses.get(owner)

    def is_mine(self, key: StreamKey) -> bool:
        """True when the ring says this worker serves the stream."""
        doc = self._doc()
        if doc is None:
            return False
        partition = ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
        return doc.serving[partition] == self._me

    def owner_url(self, key: StreamKey) -> str | None:
        address = self.owner_address(key)
        return f"http://{address}:{self._port}" if address else None

    def owner_rtmp(self, key: StreamKey) -> tuple[str, int] | None:
        """Where to relay an RTMP publisher that reached us for another worker's stream
        (for the RTMP front; the relay itself lives with the RTMP server).

        None too while this worker is the target of a handoff of the stream's
        partition: it runs the stream already, and the ingest edge feeds it
        beside the source (make-before-break, edge/session.py)."""
        doc = self._doc()
        if doc is not None:
            partition = ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
            if partition in handoffs_to(doc, self._me):
                return None
        address = self.owner_address(key)
        if address is None or self._rtmp_port is None:
            return None
        return address, self._rtmp_port
