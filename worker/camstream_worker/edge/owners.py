"""Which workers the edge feeds a stream to: pure, from the ring document.

Who calls this: each edge session (session.py) whenever the ring document
changes. The serving owner is always fed; while a handoff of the stream's
partition is in flight (STARTING, from the serving owner) its target is fed
too, so the target can go live before the source stops (make-before-break,
DESIGN.md). Once the ring's serving table names the target, the source is
no longer wanted and the session drops it. A handoff in BACKOFF (rolled
back) feeds only the source.
"""

from __future__ import annotations

from camstream import ring
from camstream.handoff import HandoffState, RingDoc
from camstream.spec import StreamKey

__all__ = ["address", "owners"]


def owners(doc: RingDoc | None, key: StreamKey) -> tuple[str, ...]:
    """The workers to feed `key` to: the serving owner first, then a handoff's target."""
    if doc is None:
        return ()
    partition = ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
    serving = doc.serving[partition]
    if not serving:
        return ()
    out = [serving]
    for handoff in doc.handoffs:
        if (
            handoff.partition == partition
            and handoff.state is HandoffState.STARTING
            and handoff.source == serving
            and handoff.target != serving
        ):
            out.append(handoff.target)
    return tuple(out)


def address(doc: RingDoc | None, worker: str, port: int) -> tuple[str, int] | None:
    """Where `worker` takes RTMP publishers (its pod IP from the ring, the workers' port)."""
    if doc is None:
        return None
    ip = doc.addresses.get(worker)
    return (ip, port) if ip else None
