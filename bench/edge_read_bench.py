"""The ingest edge's per-read steps, old way against new, in one run (#15).

What one edge session does per read of a 1 Mbit/s camera (0.1 s of it:
~13 KB, ~7 messages in FFmpeg's 4096-byte chunks), each step timed in
process, the way the edge did it before against the way it does it now:

- the read: `sock.recv(READ_SIZE)` (a fresh 256 KiB bytes object per read,
  shrunk to what came; the old edge kept each session's last one until its
  next read) against `sock.recv_into` one buffer every session shares, on a
  loopback TCP connection;
- the framing for the owner: `encode_message` per message (a bytearray and
  a copy each) against `Upstream.queue` (one packed header, the payload
  itself) and one join per read;
- the chunk decode (`ChunkDecoder.feed`), which both ways do, for scale.

    .venv/bin/python bench/edge_read_bench.py
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camstream_worker.edge.session import READ_SIZE  # noqa: E402
from camstream_worker.edge.upstream import OUT_CHUNK_SIZE, Upstream  # noqa: E402
from camstream_worker.protocols.rtmp import chunks, messages  # noqa: E402

SECONDS = 10  # of camera: 25 video frames a second (2 s GOP), 50 AAC frames
SESSIONS = 100  # cameras whose reads take turns


def camera_reads() -> list[bytes]:
    """0.1 s reads of a 1 Mbit/s camera's RTMP as FFmpeg chunks it (4096 bytes),
    cut where the clock cuts them, not at chunk boundaries (as TCP delivers)."""
    stream = bytearray()
    for n in range(25 * SECONDS):
        ts = n * 40
        video = bytes([0x17 if n % 50 == 0 else 0x27, 1, 0, 0, 0])
        video += os.urandom(40_000 if n % 50 == 0 else 4_300)
        stream += chunks.encode_message(6, messages.VIDEO, 1, ts, video, 4096)
        for k in range(2):
            audio = bytes([0xAF, 1]) + os.urandom(180)
            stream += chunks.encode_message(4, messages.AUDIO, 1, ts + 20 * k, audio, 4096)
    step = len(stream) // (10 * SECONDS)
    return [bytes(stream[i : i + step]) for i in range(0, len(stream), step)]


def per_call(step: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - started) / count * 1e6


def reads(size: int, count: int = 20_000) -> tuple[float, float]:
    """us per read of `size` bytes: recv(READ_SIZE), recv_into a shared buffer."""
    server = socket.create_server(("127.0.0.1", 0))
    writer = socket.create_connection(server.getsockname())
    reader, _ = server.accept()
    server.close()
    payload = os.urandom(size)
    shared = bytearray(READ_SIZE)

    held: list[bytes] = [b""] * SESSIONS
    turn = 0

    def fresh() -> object:
        # Each session's last read stayed alive until its next one (the old
        # edge held it across the batch's pause): SESSIONS of them here.
        nonlocal turn
        writer.sendall(payload)
        got = 0
        while got < size:
            data = reader.recv(READ_SIZE)
            got += len(data)
        held[turn] = data
        turn = (turn + 1) % SESSIONS
        return got

    def into() -> object:
        writer.sendall(payload)
        got = 0
        while got < size:
            got += reader.recv_into(shared)
        return got

    results = (per_call(fresh, count), per_call(into, count))
    for sock in (writer, reader):
        sock.close()
    return results


def main() -> int:
    data = camera_reads()
    decodes = []
    for _ in range(3):  # the best of three: the first pays for warming up
        decoder = chunks.ChunkDecoder()
        decoder.feed(messages.control(messages.SET_CHUNK_SIZE, messages.u32(4096), 128))
        started = time.perf_counter()
        batches = [decoder.feed(read) for read in data]
        decodes.append((time.perf_counter() - started) / len(data) * 1e6)
    decode = min(decodes)
    per_read = sum(len(b) for b in batches) / len(batches)
    size = sum(len(r) for r in data) // len(data)

    up = Upstream("w", ("127.0.0.1", 1))

    def old_framing() -> None:
        for batch in batches:
            b"".join(
                chunks.encode_message(
                    4 if m.type_id == messages.AUDIO else 6,
                    m.type_id,
                    1,
                    m.timestamp,
                    m.payload,
                    OUT_CHUNK_SIZE,
                )
                for m in batch
            )

    def new_framing() -> None:
        for batch in batches:
            for m in batch:
                up.queue(m.type_id, m.timestamp, m.payload)
            b"".join(up.batch)
            up.batch.clear()

    # Same bytes both ways (or the comparison means nothing).
    for m in batches[0]:
        up.queue(m.type_id, m.timestamp, m.payload)
    framed = (
        chunks.encode_message(
            4 if m.type_id == messages.AUDIO else 6,
            m.type_id,
            1,
            m.timestamp,
            m.payload,
            OUT_CHUNK_SIZE,
        )
        for m in batches[0]
    )
    assert b"".join(up.batch) == b"".join(framed)
    up.batch.clear()
    old = min(per_call(old_framing, 20) for _ in range(3)) / len(batches)
    new = min(per_call(new_framing, 20) for _ in range(3)) / len(batches)
    fresh, into = reads(size)

    print(f"one read of a 1 Mbit/s camera every 0.1 s: {size} bytes, {per_read:.1f} messages")
    print(f"{'step (us per read)':<42} | {'before':>7} | {'after':>7} | {'after/before':>12}")
    print("-" * 78)
    rows = [
        ("read: recv(256 KiB) / recv_into(shared)", fresh, into),
        ("framing: encode_message / queue + join", old, new),
        ("chunk decode (both)", decode, decode),
    ]
    for name, before, after in rows:
        print(f"{name:<42} | {before:>7.1f} | {after:>7.1f} | {after / before:>11.2f}x")
    total_before = sum(r[1] for r in rows)
    total_after = sum(r[2] for r in rows)
    print(
        f"{'these steps together':<42} | {total_before:>7.1f} | {total_after:>7.1f} | "
        f"{total_after / total_before:>11.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
