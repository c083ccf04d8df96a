"""Benchmark: what a worker's engine spends keeping the fences of streams it stops.

Who runs it: people, before a change to worker/camstream_worker/fence_memory.py::

    .venv/bin/python bench/fence_memory_bench.py                 # 1,000 and 10,000 streams
    .venv/bin/python bench/fence_memory_bench.py --streams 1000 30000 --tail-kb 20

A process handing all its streams away at once (a scale-down, a ring change)
stops each one in the same `Engine.apply`, on its event loop; for each it asks
how many tail bytes it may keep (`tail_room`) and keeps what the stream said
(`remember`). Baseline, measured in the same run: the engine's way before
FenceMemory (each stop summed every kept tail and scanned every kept stream
for expiry), reproduced here as it was. Prints seconds for n stops with each,
the ratio, and the microseconds per stop, which stay flat for FenceMemory
(O(1) per stop) and grow with n for the baseline (O(n)). Target: the per-stop
cost at the largest n is within 3x that at the smallest.
"""

from __future__ import annotations

import argparse
import sys
import time

from camstream.spec import StreamKey
from camstream_worker import engine
from camstream_worker.fence_memory import FenceMemory
from camstream_worker.outputs.hls.sequence import TAIL_BYTES, Fenced, Said, TailSegment


class _SummingMemory:
    """The engine's stopped-stream memory before FenceMemory, for the baseline."""

    def __init__(self) -> None:
        self._stopped: dict[StreamKey, tuple[Fenced, float]] = {}

    def tail_room(self, now: float) -> int:
        held = sum(
            _bytes(f) for f, at in self._stopped.values() if now - at <= engine.FENCE_TAIL_SECONDS
        )
        return max(0, min(TAIL_BYTES, engine.FENCE_MEMORY_TAIL_BYTES - held))

    def remember(self, key: StreamKey, fenced: Fenced, now: float) -> None:
        expired = now - engine.FENCE_MEMORY_SECONDS
        for old in [k for k, (_, at) in self._stopped.items() if at < expired]:
            del self._stopped[old]
        while len(self._stopped) >= engine.FENCE_MEMORY_STREAMS:
            del self._stopped[next(iter(self._stopped))]
        self._stopped.pop(key, None)
        self._stopped[key] = (fenced, now)
        held = sum(_bytes(f) for f, _ in self._stopped.values())
        for old, (kept, at) in list(self._stopped.items()):
            if held <= engine.FENCE_MEMORY_TAIL_BYTES and now - at <= engine.FENCE_TAIL_SECONDS:
                continue
            if size := _bytes(kept):
                held -= size
                self._stopped[old] = ({n: s and s._replace(tail=()) for n, s in kept.items()}, at)


def _bytes(fenced: Fenced) -> int:
    return sum(len(t.data) for said in fenced.values() if said for t in said.tail)


def _stop_all(memory: FenceMemory | _SummingMemory, streams: int, tail: bytes) -> float:
    keys = [StreamKey("bench", f"cam{i}") for i in range(streams)]
    started = time.perf_counter()
    for key in keys:
        now = time.monotonic()
        room = memory.tail_room(now)
        segment = TailSegment(1, 2.0, 1, None, True, tail[:room])
        memory.remember(key, {"": Said(1, 100.0, (segment,))}, now)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--tail-kb", type=int, default=20, help="each stream's tail bytes, in kB")
    args = parser.parse_args()
    tail = b"G" * (args.tail_kb * 1000)
    print("streams  before(s)  after(s)  ratio  before(us/stop)  after(us/stop)")
    per_stop = []
    for n in sorted(args.streams):
        before = _stop_all(_SummingMemory(), n, tail)
        after = _stop_all(
            FenceMemory(
                seconds=engine.FENCE_MEMORY_SECONDS,
                streams=engine.FENCE_MEMORY_STREAMS,
                tail_bytes=engine.FENCE_MEMORY_TAIL_BYTES,
                tail_seconds=engine.FENCE_TAIL_SECONDS,
            ),
            n,
            tail,
        )
        per_stop.append(after / n)
        print(
            f"{n:7d}  {before:9.3f}  {after:8.3f}  {before / after:5.0f}x"
            f"  {before / n * 1e6:15.1f}  {after / n * 1e6:14.1f}"
        )
    growth = per_stop[-1] / per_stop[0]
    ok = growth <= 3.0
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict}: the per-stop cost grows {growth:.2f}x from the fewest streams to the most")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
