"""Benchmark of the consistent-hash ring's claim algorithm (camstream.ring).

Who runs it: people and CI, to check the ring's targets from issue 3 before a
change to ``camstream/ring_plan.py`` lands::

    .venv/bin/python bench/ring_bench.py            # P = 1024, 4096, 16384
    .venv/bin/python bench/ring_bench.py --partitions 4096 --repeat 9

For each P and N workers (N ≤ P) it prints: plan time (a fresh ring, a join,
a leave; median of --repeat runs, in ms), partitions moved on a join N→N+1
against the ideal P/(N+1), partitions moved on a leave N→N-1 (the highest
ordinal, as a StatefulSet scales down) against its lower bound, the leaver's
own share, max/mean partitions per worker, the encoded ConfigMap value's size,
and how a crashed worker's partitions spread over fallbacks. Then one
PASS/FAIL line per target, and exit status 1 if any target fails.

Targets:
- join: moved ≤ 1.05 x P/(N+1);
- leave: moved ≤ 1.05 x the leaver's share (what must move at the least);
- balance: max/mean ≤ 1.01 where P ≥ 16·N. No table can beat max/mean =
  ⌈P/N⌉/(P/N) (shares are whole partitions), so where that bound is above
  1.01 the row is held to the bound instead and marked ``*``;
- time: plan < 100 ms for P = 4096, N = 1000 (the slowest of the three plans).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from camstream import ring

WORKER_COUNTS = (3, 10, 30, 100, 300, 1000)
PARTITION_COUNTS = (1024, 4096, 16384)
MOVE_SLACK = 1.05
BALANCE_LIMIT = 1.01
TIME_LIMIT_MS = 100.0
TIMED_CASE = (4096, 1000)


@dataclass(frozen=True)
class Row:
    """Measured figures for one (P, N)."""

    partitions: int
    workers: int
    fresh_ms: float
    join_ms: float
    leave_ms: float
    join_moved: int
    join_ideal: float
    leave_moved: int
    leave_share: int
    max_over_mean: float
    balance_bound: float
    encoded_bytes: int
    crash_fallbacks: int
    crash_max_load: int

    @property
    def balance_checked(self) -> bool:
        return self.partitions >= 16 * self.workers

    @property
    def balance_limit(self) -> float:
        return max(BALANCE_LIMIT, self.balance_bound)


def workers(n: int) -> list[str]:
    return [f"camstream-worker-{i}" for i in range(n)]


def median_ms(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def measure(partitions: int, n: int, repeat: int) -> Row:
    members = workers(n)
    joined_members = workers(n + 1)
    left_members = workers(n - 1)
    # Warm the per-P rank cache once, as a long-running operator would have.
    table = ring.plan(None, members, partitions)
    fresh_ms = median_ms(lambda: ring.plan(None, members, partitions), repeat)
    join_ms = median_ms(lambda: ring.plan(table, joined_members, partitions), repeat)
    joined = ring.plan(table, joined_members, partitions)

    leaver = members[-1]
    if left_members:
        leave_ms = median_ms(lambda: ring.plan(table, left_members, partitions), repeat)
        leave_moved = len(ring.transfers(table, ring.plan(table, left_members, partitions)))
    else:
        leave_ms, leave_moved = math.nan, 0
    counts = table.counts()
    mean = partitions / n
    crashed = members[0]
    serving = ring.effective_owners(table, set(members) - {crashed}) if n > 1 else ()
    fallback_load = Counter(serving[p] for p in table.partitions_of(crashed)) if serving else {}
    return Row(
        partitions=partitions,
        workers=n,
        fresh_ms=fresh_ms,
        join_ms=join_ms,
        leave_ms=leave_ms,
        join_moved=len(ring.transfers(table, joined)),
        join_ideal=partitions / (n + 1),
        leave_moved=leave_moved,
        leave_share=counts.get(leaver, 0),
        max_over_mean=max(counts.values()) / mean,
        balance_bound=math.ceil(mean) / mean,
        encoded_bytes=len(ring.encode(table).encode("utf-8")),
        crash_fallbacks=len(fallback_load),
        crash_max_load=max(fallback_load.values(), default=0),
    )


HEADER = (
    f"{'P':>6} {'N':>5} {'fresh ms':>9} {'join ms':>8} {'leave ms':>9} "
    f"{'join moved':>10} {'ideal':>8} {'ratio':>6} "
    f"{'leave moved':>11} {'share':>6} {'ratio':>6} "
    f"{'max/mean':>9} {'bound':>6} {'ConfigMap':>10} {'crash→':>7} {'max':>4}"
)


def format_row(row: Row) -> str:
    leave_ratio = row.leave_moved / row.leave_share if row.leave_share else math.nan
    mark = "*" if row.balance_checked and row.balance_bound > BALANCE_LIMIT else " "
    return (
        f"{row.partitions:>6} {row.workers:>5} {row.fresh_ms:>9.2f} {row.join_ms:>8.2f} "
        f"{row.leave_ms:>9.2f} {row.join_moved:>10} {row.join_ideal:>8.1f} "
        f"{row.join_moved / row.join_ideal:>6.3f} {row.leave_moved:>11} {row.leave_share:>6} "
        f"{leave_ratio:>6.3f} {row.max_over_mean:>8.4f}{mark} {row.balance_bound:>6.4f} "
        f"{row.encoded_bytes:>10,} {row.crash_fallbacks:>7} {row.crash_max_load:>4}"
    )


def verdicts(rows: list[Row]) -> list[tuple[str, bool | None, str]]:
    """(target, passed, detail) for each target of issue 3; passed None: not measured."""
    join_bad = [r for r in rows if r.join_moved > MOVE_SLACK * r.join_ideal]
    leave_bad = [r for r in rows if r.leave_moved > MOVE_SLACK * r.leave_share]
    checked = [r for r in rows if r.balance_checked]
    balance_bad = [r for r in checked if r.max_over_mean > r.balance_limit + 1e-12]
    at_bound = [r for r in checked if r.balance_bound > BALANCE_LIMIT]
    timed = [r for r in rows if (r.partitions, r.workers) == TIMED_CASE]
    slowest = max((max(r.fresh_ms, r.join_ms, r.leave_ms) for r in timed), default=math.nan)

    def where(bad: list[Row]) -> str:
        return ", ".join(f"P={r.partitions} N={r.workers}" for r in bad)

    worst_join = max(r.join_moved / r.join_ideal for r in rows)
    worst_leave = max(r.leave_moved / r.leave_share for r in rows if r.leave_share)
    bound_note = (
        f"; {len(at_bound)} row(s) marked * held to the integer bound ⌈P/N⌉/(P/N) "
        f"> {BALANCE_LIMIT} ({where(at_bound)}), which no assignment can beat"
        if at_bound
        else ""
    )
    return [
        (
            f"join moved <= {MOVE_SLACK} x P/(N+1)",
            not join_bad,
            f"worst ratio {worst_join:.3f}" + (f"; failing: {where(join_bad)}" if join_bad else ""),
        ),
        (
            f"leave moved <= {MOVE_SLACK} x leaver's share",
            not leave_bad,
            f"worst ratio {worst_leave:.3f}"
            + (f"; failing: {where(leave_bad)}" if leave_bad else ""),
        ),
        (
            f"max/mean <= {BALANCE_LIMIT} for P >= 16 N",
            (not balance_bad) if checked else None,
            f"{len(checked)} rows checked{bound_note}"
            + (f"; failing: {where(balance_bad)}" if balance_bad else ""),
        ),
        (
            f"plan < {TIME_LIMIT_MS:.0f} ms for P={TIMED_CASE[0]} N={TIMED_CASE[1]}",
            (slowest < TIME_LIMIT_MS) if timed else None,
            f"slowest plan {slowest:.2f} ms" if timed else "case not in this run",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=list(PARTITION_COUNTS))
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per plan (median)")
    args = parser.parse_args(argv)

    # The first plan for a given P builds the cached rank order of its
    # partitions: a once-per-process cost, reported apart from the table.
    cold = []
    for partitions in args.partitions:
        start = time.perf_counter()
        ring.plan(None, workers(3), partitions)
        cold.append(f"P={partitions}: {(time.perf_counter() - start) * 1000.0:.1f} ms")
    print("first plan per P (builds the rank cache, once per process): " + ", ".join(cold))
    print(HEADER)
    rows: list[Row] = []
    for partitions in args.partitions:
        for n in args.workers:
            if n <= partitions:
                rows.append(measure(partitions, n, max(1, args.repeat)))
                print(format_row(rows[-1]), flush=True)
    print(
        "\nmoved: partitions that change owner; share: the leaver's partitions (the least a "
        "leave can move);\nbound: ⌈P/N⌉/(P/N), the best max/mean any table can reach; "
        "crash→: distinct fallbacks serving\nworker 0's partitions when it crashes, max: the "
        "most any one of them takes.\n"
    )
    failed = False
    for target, passed, detail in verdicts(rows):
        failed |= passed is False
        word = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        print(f"{word}  {target}  ({detail})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
