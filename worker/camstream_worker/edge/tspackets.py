"""MPEG-TS packet boundaries for the SRT relay: pure, no I/O, no demuxing.

Who calls this: the edge's SRT relay (srt_relay.py). It forwards a camera's
MPEG-TS bytes unchanged, but a worker it starts feeding mid-stream (a new
owner, a handoff's target, an owner back after a loss, one that fell over its
buffer) must be given whole 188-byte packets, and best from a PAT (the table
a demuxer starts from), so the worker's demuxer syncs at once.

- `Aligner` cuts a byte stream into whole packets: it finds the sync byte
  (0x47) confirmed by the next packet's, and carries a partial packet over
  to the next call.
- `pat_start` is where the first packet starting a PAT (PID 0, payload unit
  start) is in a run of whole packets.
"""

from __future__ import annotations

__all__ = ["PACKET", "SYNC", "Aligner", "pat_start"]

PACKET = 188
SYNC = 0x47
# A stream that has lost sync: bytes searched for it before the carry is dropped.
MAX_CARRY = 64 * PACKET


class Aligner:
    """A byte stream in, whole MPEG-TS packets out (a multiple of 188 bytes, from a sync byte)."""

    def __init__(self) -> None:
        self._carry = b""
        self.skipped = 0  # bytes dropped to find the sync byte

    def feed(self, data: bytes) -> bytes:
        buf = self._carry + data if self._carry else data
        start = _sync(buf)
        if start is None:
            keep = buf[-(2 * PACKET) :]  # may hold the start of the next packets
            self.skipped += len(buf) - len(keep)
            self._carry = keep
            return b""
        self.skipped += start
        end = start + (len(buf) - start) // PACKET * PACKET
        self._carry = buf[end:]
        # A packet in the middle without its sync byte: the camera lost sync. What
        # follows is searched again from there (rare: SRT delivers whole messages).
        syncs = buf[start:end:PACKET]  # every packet's first byte, checked in one C call
        if syncs.count(SYNC) != len(syncs):
            at = start + next(i for i, b in enumerate(syncs) if b != SYNC) * PACKET
            self._carry = buf[at:]
            if len(self._carry) > MAX_CARRY:
                self.skipped += len(self._carry)
                self._carry = b""
            return bytes(buf[start:at])
        return bytes(buf[start:end])


def _sync(buf: bytes) -> int | None:
    """Where whole packets start: a sync byte followed by one a packet later (or the end)."""
    for at in range(min(len(buf), PACKET)):
        if buf[at] != SYNC:
            continue
        if at + PACKET >= len(buf) or buf[at + PACKET] == SYNC:
            return at if len(buf) - at >= PACKET else None
    return None


def pat_start(packets: bytes | memoryview) -> int | None:
    """The offset of the first packet that starts a PAT in whole `packets`, or None."""
    for at in range(0, len(packets) - PACKET + 1, PACKET):
        flags = packets[at + 1]
        pid = (flags & 0x1F) << 8 | packets[at + 2]
        if pid == 0 and flags & 0x40:
            return at
    return None
