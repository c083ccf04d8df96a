"""Who may hold an RTMP connection: a global cap, and a cap per address on strangers.

Who calls this: the listener (listener.py) and the front (front.py) ask
`admit` for every connection they accept, tell `published` when a connection
proves a stream key, and `release` when it closes. Pure bookkeeping, no I/O
and no clock, so it is tested by properties.

- The global cap keeps RTMP from running the process out of file descriptors
  (limits.connection_cap sizes it from RLIMIT_NOFILE).
- The per-address cap counts only connections that are not publishing yet:
  a site with fifty cameras behind one NAT publishes through one address, so
  publishers are not capped per address, but a stranger can hold only
  `max_pending_per_address` connections open while saying nothing useful.
  IPv6 clients are grouped by /64, the block one subscriber usually gets.
"""

from __future__ import annotations

import ipaddress

__all__ = ["Admission", "address_key"]


def address_key(host: str) -> str:
    """What the per-address caps count by: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host  # a Unix socket or something unexpected: itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Admission:
    def __init__(self, max_connections: int, max_pending_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_pending_per_address = max_pending_per_address
        self.total = 0
        self._pending: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address` in; or the refusal reason, counting nothing."""
        if self.total >= self.max_connections:
            return "capacity"
        if self._pending.get(address, 0) >= self.max_pending_per_address:
            return "per_address"
        self.total += 1
        self._pending[address] = self._pending.get(address, 0) + 1
        return None

    def published(self, address: str) -> None:
        """An admitted connection from `address` proved a key: no longer a stranger."""
        self._unpend(address)

    def release(self, address: str, *, pending: bool) -> None:
        """An admitted connection closed; `pending`: it never got to `published`."""
        self.total -= 1
        if pending:
            self._unpend(address)

    def move_pending(self, old: str, new: str) -> None:
        """A stranger turns out to be counted by another address (protocols/rtmp/forwarded.py)."""
        self._unpend(old)
        self._pending[new] = self._pending.get(new, 0) + 1

    def pending(self, address: str) -> int:
        return self._pending.get(address, 0)

    def _unpend(self, address: str) -> None:
        left = self._pending[address] - 1
        if left:
            self._pending[address] = left
        else:
            del self._pending[address]
