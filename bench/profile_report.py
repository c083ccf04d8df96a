"""The report of bench/worker_profile.py: one run's figures, per process, as text.

Who calls this: worker_profile.py at the end of a run, and for `--analyse DIR`
(an earlier run's kept profiles, the py-spy stacks charged again with the
current rules of bench/profiles.py). Per packet means per FLV audio or video
frame: syscalls are divided by the packets the clip delivers in the window
(the engines kept up), allocations by the packets PyAV muxed under the same
probes (the probes slow the engines down).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench import profiles


def analyse(folder: Path, *, window: float) -> int:
    """Print an earlier run's report, the py-spy stacks charged by today's rules."""
    report = json.loads((folder / "report.json").read_text())
    for role in report.get("stages", {}):
        lines = (folder / f"pyspy-native-{role}.txt").read_text().splitlines()
        report["stages"][role] = dict(profiles.breakdown(lines, key="stage"))
        report["libraries"][role] = dict(profiles.breakdown(lines, key="library"))
    print_report(report, streams=report["streams"], window=report.get("window", window))
    return 0


def print_report(report: dict[str, object], *, streams: int, window: float) -> None:
    """The human report of one run (what worker_profile.py prints at its end)."""
    live = int(report["live"])  # type: ignore[call-overload]
    rate = float(report["packets_per_stream_second"])  # type: ignore[arg-type]
    cpu: dict[str, float] = report["cpu"]  # type: ignore[assignment]
    loads: list[tuple[float, float, float]] = report["load_average_before_after"]  # type: ignore[assignment]
    before, after = loads
    print(f"N = {streams}, live {live}; {rate:.1f} packets per stream and second")
    print(f"load average before {before[0]:.2f}, after {after[0]:.2f}")
    engines = [role for role in cpu if role.startswith("engine")]
    share = {role: live / max(len(engines), 1) for role in engines}  # streams per engine
    print("\nCPU (% of a core): " + ", ".join(f"{r} {v:.1f}" for r, v in cpu.items()))
    print(f"per stream: {sum(cpu.values()) / max(live, 1):.3f} %")

    # A phase left out with --phases has no section.
    if "stages" in report:
        print("\nTime by stage (py-spy --native, share of each process's samples):")
        print_shares(report["stages"])  # type: ignore[arg-type]
        print("\nTime by library at the leaf (py-spy --native):")
        print_shares(report["libraries"])  # type: ignore[arg-type]
    gil: dict[str, float] = report.get("gil", {})  # type: ignore[assignment]
    if gil:
        print("\nGIL held (% of wall time, py-spy --gil) vs CPU (%):")
    for role, held in gil.items():
        print(f"  {role:<8} GIL {held:5.1f}   CPU {cpu.get(role, 0.0):5.1f}")
    if "dso" in report:
        print("\nperf record, share by shared object (kernel included):")
    for role, text in report.get("dso", {}).items():  # type: ignore[attr-defined]
        print(f"  {role}:")
        for line in text.strip().splitlines()[:8]:
            print(f"    {line.strip()}")

    syscalls: dict[str, dict[str, int]] = report.get("syscalls", {})  # type: ignore[assignment]
    if syscalls:
        print(f"\nSyscalls per packet (perf stat over {window:.0f} s):")
        syscalls = {**syscalls, "engines": sum_engines(syscalls)}
    # Per engine, streams are taken as split evenly; "engines" sums them, exactly.
    for role, counts in syscalls.items():
        packets = rate * share.get(role, live) * window
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:12]
        print(f"  {role:<8} " + ", ".join(f"{k} {v / packets:.2f}" for k, v in top))
    allocations: dict[str, dict[str, int]] = report.get("allocations", {})  # type: ignore[assignment]
    if allocations:
        print(f"\nAllocations per packet (uprobes, {window:.0f} s):")
        allocations = {**allocations, "engines": sum_engines(allocations)}
    for role, counts in allocations.items():
        muxed = counts.get(profiles.MUXED, 0)
        packets = muxed or rate * share.get(role, live) * window
        print(
            f"  {role:<8} "
            + ", ".join(f"{k} {v / packets:.1f}" for k, v in counts.items() if k != profiles.MUXED)
            + (f" ({muxed} packets muxed)" if muxed else " (per packet the clip delivered)")
        )

    print("\nMemory by kind of mapping (MB PSS / MB private):")
    memory: dict[str, dict[str, dict[str, int]]] = report["memory"]  # type: ignore[assignment]
    for role, kinds in memory.items():
        total = sum(k["pss_kb"] for k in kinds.values()) / 1024
        print(f"  {role}: {total:.1f} MB PSS")
        for kind, sizes in sorted(kinds.items(), key=lambda kv: -kv[1]["pss_kb"]):
            print(f"    {kind:<48} {sizes['pss_kb'] / 1024:7.1f} {sizes['private_kb'] / 1024:7.1f}")


def sum_engines(table: dict[str, dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for role, counts in table.items():
        if role.startswith("engine"):
            total.update(counts)
    return dict(total)


def print_shares(table: dict[str, dict[str, int]]) -> None:
    for role, counts in table.items():
        total = sum(counts.values()) or 1
        print(f"  {role} ({total} samples):")
        for name, n in Counter(counts).most_common():
            print(f"    {name:<48} {n / total * 100:5.1f} %")


__all__ = ["analyse", "print_report", "print_shares", "sum_engines"]
