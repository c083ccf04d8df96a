"""Stream key checks take turns per source address, with a pause after each failure.

Who calls this: each RTMP connection (connection.py), around its one call to
the authorizer. A client guessing stream keys used to get 22 tries a second
from one address, and every try logged lines and rewrote its stream's status.
Here, per address (admission.address_key):

- one key check runs at a time; the others wait their turn, in order;
- after a refused publish (wrong key or unknown stream) the next check from
  that address starts `pause` seconds later at the earliest (MediaMTX pauses
  2 s after a failed authentication). The pause is kept by the gate, not by
  the refused connection, so hanging up at once does not shorten it.

So one address gets at most one refusal per `pause` seconds, whatever it
does; cameras that share the address with it (a NAT) wait, they are not
refused, and a right key costs no pause. A connection waiting its turn is
still subject to its publish deadline (limits.HANDSHAKE_TIMEOUT): with the
per-address cap of strangers, that bounds the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

__all__ = ["KeyGate", "Turn"]


class Turn:
    """One key check's turn; `failed()` starts the address's pause."""

    def __init__(self, gate: KeyGate, address: str) -> None:
        self._gate = gate
        self._address = address

    def failed(self) -> None:
        self._gate._blocked_until[self._address] = self._gate._clock() + self._gate.pause


class KeyGate:
    def __init__(self, pause: float, clock: Callable[[], float]) -> None:
        self.pause = pause
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[Turn]:
        """Wait for `address`'s turn (and the end of its pause), then check one key."""
        lock = self._locks.setdefault(address, asyncio.Lock())
        self._users[address] = self._users.get(address, 0) + 1
        try:
            async with lock:
                # Only the lock's holder starts a pause, so one wait is enough.
                wait = self._blocked_until.get(address, 0.0) - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                yield Turn(self, address)
        finally:
            self._users[address] -= 1
            if not self._users[address]:
                del self._users[address], self._locks[address]
            self._forget_expired()

    def waiting(self, address: str) -> int:
        """Checks in progress or waiting for `address`."""
        return self._users.get(address, 0)

    def blocked(self) -> int:
        """Addresses in a pause now."""
        now = self._clock()
        return sum(1 for until in self._blocked_until.values() if until > now)

    def _forget_expired(self) -> None:
        # Entries live `pause` seconds; purging when there are many keeps the
        # table as small as the addresses that failed in the last pause.
        if len(self._blocked_until) > 64:
            now = self._clock()
            for address, until in list(self._blocked_until.items()):
                if until <= now and address not in self._users:
                    del self._blocked_until[address]
