"""Benchmark of the RTMP chunk decoder under the byte patterns of issue 8.

Who runs it: people and CI (`make bench`), to check that decoding stays
linear in the bytes received whatever a peer sends, and that one decode call
with the connection's work budget stays short::

    .venv/bin/python bench/rtmp_bench.py
    .venv/bin/python bench/rtmp_bench.py --repeat 5

Every pattern is fed in 256 KiB reads (what asyncio hands a protocol), through
`ChunkDecoder.push` + `decode(budget)` as the connection does. Rows:

- ffmpeg 4096 (the baseline): what FFmpeg sends, media messages of a 1 Mbit/s
  camera in 4096-byte chunks, back to back;
- camera reads: the same bytes in 4 KiB reads, what the listener reads from
  a 1 Mbit/s publisher once per read batch (~30 ms; the live case, where the
  cost of a decode call counts as much as the bytes);
- librtmp 128: the same media in 128-byte chunks (the fast path's case);
- interleaved 128: two large messages alternating chunk by chunk at the
  minimum chunk size, which defeats the fast path (the attack, at 128);
- empty flood: one-byte headers each starting an empty message (the
  connection refuses these after its message budget; here, the decoder's
  cost per step).

Columns: ns per byte and its ratio to the baseline measured in the same run;
the same for eight times the input (linear time keeps the ratio ~1); the
mean time of one `decode` call (the longest single call says more about the
machine's other load than about the decoder, so it is not the target); and
µs per message returned, for the media rows.

To compare two versions of the decoder in one run, run this file with
`PYTHONPATH` pointing at the other checkout's `worker` (and its root); the
bench imports whatever `camstream_worker` is found first.

With --before, the decoder of `git show main:...chunks.py` (before issue 8)
runs the interleaved pattern at chunk size 1 on 16 and 64 KiB, to show what
the 128 minimum and the linear scan replaced.

Targets: interleaved and flood ≤ 1.5x their own time per byte at 8x the
input (linear); a decode call ≤ 2 ms on average with the default budget (the
event loop is never held long by one read).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from camstream_worker.protocols.rtmp.chunks import ChunkDecoder, ChunkError, encode_message
from camstream_worker.servers.rtmp.limits import WORK_BUDGET

READ = 256 * 1024
CAMERA_READ = 4096  # ~30 ms of a 1 Mbit/s camera: one read batch of the listener
NOT_MEDIA = ("interleaved 128", "empty flood")  # few or no messages: no per-message figure
REPO = Path(__file__).resolve().parents[1]
CHUNKS_PATH = "worker/camstream_worker/protocols/rtmp/chunks.py"


def media(total: int, chunk: int) -> bytes:
    """A 1 Mbit/s camera's messages: 25 video frames (~5 KB) and 43 AAC frames a second."""
    out = bytearray()
    if chunk != 128:
        out += encode_message(2, 1, 0, 0, chunk.to_bytes(4, "big"), 128)
    ts = 0
    while len(out) < total:
        out += encode_message(6, 9, 1, ts, os.urandom(5000), chunk)
        out += encode_message(4, 8, 1, ts, os.urandom(300), chunk)
        out += encode_message(4, 8, 1, ts + 23, os.urandom(300), chunk)
        ts += 40
    return bytes(out[:total])


def interleaved(total: int, chunk: int = 128) -> bytes:
    length = min(total // 2, 8 * 1024 * 1024 - 1)

    def chunks_of(csid: int) -> list[bytes]:
        raw = encode_message(csid, 18, 1, 0, os.urandom(length), chunk)
        first = 12 + chunk
        return [raw[:first]] + [raw[i : i + chunk + 1] for i in range(first, len(raw), chunk + 1)]

    data = b"".join(a + b for a, b in zip(chunks_of(4), chunks_of(5), strict=True))
    if chunk != 128:  # ask for the small chunk size first (the old decoder allowed it)
        data = encode_message(2, 1, 0, 0, chunk.to_bytes(4, "big"), 128) + data
    return data[:total]


def empty_flood(total: int) -> bytes:
    return encode_message(3, 20, 0, 0, b"") + b"\xc3" * (total - 12)


def run(decoder_class: type, data: bytes, read: int = READ) -> tuple[float, int, int]:
    """(seconds in all, decode calls, messages) for `data` in reads of `read` bytes,
    budgeted as a connection."""
    decoder = decoder_class(max_message_size=16 << 20, max_pending_bytes=32 << 20)
    calls = messages = 0
    started = time.perf_counter()
    for offset in range(0, len(data), read):
        if hasattr(decoder, "push"):
            decoder.push(data[offset : offset + read])
            while True:
                messages += len(decoder.decode(WORK_BUDGET))
                calls += 1
                if not decoder.backlog:
                    break
        else:  # the decoder before issue 8: feed only, one call a read
            messages += len(decoder.feed(data[offset : offset + read]))
            calls += 1
    return time.perf_counter() - started, calls, messages


def median_run(
    decoder_class: type, data: bytes, repeat: int, read: int = READ
) -> tuple[float, int, int]:
    runs = [run(decoder_class, data, read) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs[0][1], runs[0][2]


def old_decoder() -> type | None:
    """ChunkDecoder as it was on main before issue 8, if git can show it."""
    try:
        source = subprocess.run(
            ["git", "show", f"main:{CHUNKS_PATH}"],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if "MIN_CHUNK_SIZE" in source:
        return None  # main already has the new decoder: nothing to compare with
    path = Path(tempfile.mkdtemp()) / "chunks_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("chunks_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.ChunkDecoder  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2 * 1024 * 1024, help="bytes per pattern")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="also time main's old decoder")
    args = parser.parse_args(argv)
    size = args.size
    patterns: list[tuple[str, Callable[[int], bytes], int]] = [
        ("ffmpeg 4096", lambda n: media(n, 4096), READ),
        ("camera reads", lambda n: media(n, 4096), CAMERA_READ),
        ("librtmp 128", lambda n: media(n, 128), READ),
        ("interleaved 128", interleaved, READ),
        ("empty flood", empty_flood, READ),
    ]
    print(f"chunk decoding, {size // 1024} KiB and 8x that, in {READ // 1024} KiB reads, "
          f"budget {WORK_BUDGET} chunks a call, median of {args.repeat}")  # fmt: skip
    print(f"{'pattern':<16} {'ns/B':>7} {'ratio':>6} {'ns/B 8x':>8} {'8x/1x':>6} {'ms a call':>10}"
          f" {'us a msg':>9}")  # fmt: skip
    baseline = None
    failures = []
    for name, make, read in patterns:
        small, calls, count = median_run(ChunkDecoder, make(size), args.repeat, read)
        large, _, _ = median_run(ChunkDecoder, make(8 * size), args.repeat, read)
        per_byte, per_byte_large = small / size * 1e9, large / (8 * size) * 1e9
        baseline = baseline or per_byte
        growth = per_byte_large / per_byte
        per_call = small / calls
        per_message = f"{small / count * 1e6:>9.2f}" if name not in NOT_MEDIA else ""
        print(f"{name:<16} {per_byte:>7.2f} {per_byte / baseline:>6.2f} {per_byte_large:>8.2f} "
              f"{growth:>6.2f} {per_call * 1000:>10.3f} {per_message}")  # fmt: skip
        if name in ("interleaved 128", "empty flood") and growth > 1.5:
            failures.append(f"{name}: 8x the input took {growth:.2f}x the time per byte")
        if per_call > 0.002:
            failures.append(f"{name}: a decode call took {per_call * 1000:.1f} ms on average")
    if args.before:
        before = old_decoder()
        if before is None:
            print("(no decoder from before issue 8 on main to compare with)")
        else:
            print("\nbefore issue 8 (main's decoder), interleaved at chunk size 1:")
            times = {}
            for kib in (16, 64):
                data = interleaved(kib * 1024, chunk=1)
                try:
                    times[kib] = median_run(before, data, 1)[0]
                except ChunkError as exc:
                    print(f"  refused: {exc}")
                    break
                print(f"  {kib:>3} KiB: {times[kib] * 1000:8.1f} ms, "
                      f"{times[kib] / (kib * 1024) * 1e9:8.1f} ns/B")  # fmt: skip
            if len(times) == 2:
                print(f"  4x the input took {times[64] / times[16]:.1f}x the time")
            try:
                ChunkDecoder().feed(interleaved(16 * 1024, chunk=1))
            except ChunkError as exc:
                print(f"  now: refused at once ({exc})")
    print("PASS: decoding is linear and each call short" if not failures else "FAIL:")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
