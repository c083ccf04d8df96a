"""What an RTMP connection may use of the listener that made it.

Who calls this: ``RtmpConnection`` (connection.py) gets a ``Host``, which the
listener (listener.py) is; tests may host connections with their own. The
listener shares through it what connections have in common: limits,
counters and refusals, the admission caps, the key gate, the registry of who
publishes what, the read-batch timer, the stall-discounting clock and the
``Authorizer`` that answers each publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from camstream_worker.protocols.rtmp.publish import PublishSink
from camstream_worker.servers.rtmp.keygate import KeyGate
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.rtmp.refusals import Refusals

if TYPE_CHECKING:
    from camstream_worker.servers.rtmp.connection import RtmpConnection

__all__ = ["Authorizer", "Counters", "Host"]


class Authorizer(Protocol):
    """Decides whether a publish is allowed and where it goes."""

    def __call__(
        self, app: str, stream_name: str, peer: str
    ) -> PublishSink | Awaitable[PublishSink | None] | None: ...


@dataclass(slots=True)
class Counters:
    """Totals since the listener started; its connections count into them."""

    connections_total: int = 0
    publishes_total: int = 0
    reads: int = 0
    bytes_in: int = 0
    pings_ignored: int = 0


class Host(Protocol):
    """What a connection may use of the listener that made it."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    counters: Counters
    refusals: Refusals
    key_gate: KeyGate
    authorize: Authorizer
    edge_token: str | None  # believe an edge's word on a camera's address (forwarded.py)

    def clock(self) -> float:
        """Loop time without the loop's own stalls (clocks.StallClock)."""
        ...

    @property
    def stalled(self) -> float:
        """Seconds the loop has been stalled, in all."""
        ...

    def admit(self, connection: RtmpConnection) -> str | None:
        """Count a new connection in; or the reason it is refused (too many open)."""
        ...

    def readdress(self, connection: RtmpConnection, address: str) -> None:
        """Count a stranger by `address` from now on (an edge vouched for its camera)."""
        ...

    def published(self, connection: RtmpConnection) -> None:
        """The connection's publish was accepted: it is no longer a stranger."""
        ...

    def forget(self, connection: RtmpConnection) -> None:
        """The connection is closed."""
        ...

    def claim(self, identity: tuple[str, str], connection: RtmpConnection) -> RtmpConnection | None:
        """Record `connection` as the publisher of `identity`; return the one it replaces."""
        ...

    def release(self, identity: tuple[str, str], connection: RtmpConnection) -> None:
        """`connection` no longer publishes `identity` (if it still was the publisher)."""
        ...

    def resume_later(self, connection: RtmpConnection) -> None:
        """Call `connection.resume_batch()` after about one read batch."""
        ...
