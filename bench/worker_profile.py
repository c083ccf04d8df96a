"""Where camstream's time and memory go with N passthrough streams (issue 12, part 2).

Starts a standalone camstream worker with N RTMP push streams and the worker
benchmark's senders (bench/worker_bench.py: the same clip, ten outputs per
FFmpeg process), waits for every stream to be live, and then, one phase after
the other so that no tool slows what another measures:

1. CPU (user + system) of the front and each engine process over `--window`
   seconds, and syscalls per packet (`perf stat` on the syscall tracepoints,
   counted in the kernel: it does not stop the process as strace would);
2. py-spy (`--native`, 97 Hz) on every process at once: samples per stage of
   the passthrough path (bench/profiles.py) and per library at the leaf;
3. py-spy `--gil`: the share of time some thread held the GIL, per process;
4. `perf record` by shared object (the kernel included, which py-spy cannot
   see);
5. allocations per packet: uprobes on libc's `malloc`, CPython's
   `PyObject_Malloc` and FFmpeg's `av_malloc`, counted by `perf stat` (the
   probes are added for this phase and removed after it, also on failure);
6. memory: PSS and private memory per kind of mapping (/proc/PID/smaps).

Packets per stream and second are counted from the clip (ffprobe), so "per
packet" means per FLV audio or video frame received.

    flock /tmp/cs/heavy.lock .venv/bin/python bench/worker_profile.py --streams 200

Needs py-spy (`pip install -e .[bench]`) and perf (Debian's linux-perf), and
root for perf's tracepoints and uprobes. Prints a report; `--keep DIR` keeps
the raw profiles (collapsed stacks, perf output) for a closer look.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import profile_report, profiles  # noqa: E402
from bench.worker_bench import (  # noqa: E402
    SENDERS_PER_PROCESS,
    _cpu_seconds,
    _fetch_all,
    _send,
    _stop,
    camstream_receiver,
)
from tests.harness.cameras import make_clip  # noqa: E402

SYSCALLS = (
    "read",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "epoll_wait",
    "openat",
    "close",
    "rename",
    "unlink",
    "newfstat",
    "lseek",
    "ioctl",
    "futex",
    "getpid",
    "mmap",
    "munmap",
    "brk",
    "madvise",
    "epoll_ctl",
    "fcntl",
    "getrandom",
    "clock_nanosleep",
    "poll",
    "select",
    "sched_yield",
    "newfstatat",
    "statx",
    "unlinkat",
    "renameat2",
    "mprotect",
    "rt_sigprocmask",
    "pread64",
    "pwrite64",
    "clock_gettime",
    "gettid",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "ftruncate",
)
MUXED = profiles.MUXED
PROBES = (  # (event name, library, function)
    ("libc_malloc", "libc.so.6", "malloc"),
    ("pyobject_malloc", "libpython3", "PyObject_Malloc"),
    ("av_malloc", "libavutil", "av_malloc"),
    # Once per packet muxed (PyAV's mux), counted with the allocations: the
    # probes slow the engine down, so a packet count from the clip's rate
    # would overstate the packets handled in the window.
    (MUXED, "libavformat", "av_interleaved_write_frame"),
)
PHASES = ("syscalls", "spy", "gil", "perf", "allocations")
PROBE_GROUP = "camstream_bench"
SAMPLE_RATE = 97


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--processes", type=int, default=0, help="engines (0 = one per core)")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--keep", type=Path, help="keep the raw profiles in this folder")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which phases after the CPU window, comma-separated (default: {','.join(PHASES)})",
    )
    parser.add_argument(
        "--analyse",
        type=Path,
        metavar="DIR",
        help="only print the report of an earlier run's --keep folder (stages re-read)",
    )
    args = parser.parse_args()
    if args.analyse:
        return profile_report.analyse(args.analyse, window=args.window)
    for tool in ("perf", "ffprobe"):
        if shutil.which(tool) is None:
            parser.error(f"needs {tool}")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        parser.error("needs py-spy: pip install -e '.[bench]'")

    clip = make_clip(seconds=10, bitrate_kbps=1000, gop_seconds=2, fps=25, container="flv")
    rate = _packets_per_second(clip)
    keep = args.keep or Path(tempfile.mkdtemp(prefix="camstream-profile-"))
    keep.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    report: dict[str, object] = {
        "streams": args.streams,
        "window": args.window,
        "packets_per_stream_second": rate,
    }
    with camstream_receiver(args.streams, processes=args.processes) as (worker, urls, lists):
        senders = [
            _send(urls[i : i + SENDERS_PER_PROCESS], clip)
            for i in range(0, len(urls), SENDERS_PER_PROCESS)
        ]
        try:
            time.sleep(args.warmup)
            front = psutil.Process(worker.pid)
            roles = {front.pid: "front"} | _child_roles(front)
            positions = _fetch_all(lists)
            before = positions()
            phases = set(args.phases.split(","))
            report["cpu"] = _cpu_phase(roles, args.window)  # always: the others need it
            if "syscalls" in phases:
                report["syscalls"] = _syscall_phase(roles, args.window, keep)
            if "spy" in phases:
                report["stages"], report["libraries"] = _spy_phase(spy, roles, args.window, keep)
            if "gil" in phases:
                report["gil"] = _gil_phase(spy, roles, args.window, keep)
            if "perf" in phases:
                report["dso"] = _perf_record_phase(roles, args.window, keep)
            if "allocations" in phases:
                report["allocations"] = _allocation_phase(roles, args.window, keep)
            report["memory"] = {
                roles[pid]: profiles.smaps_by_kind(Path(f"/proc/{pid}/smaps").read_text())
                for pid in roles
            }
            after = positions()
            report["live"] = sum(1 for k, n in after.items() if n > before.get(k, 0))
        finally:
            _stop(senders)
    report["load_average_before_after"] = [load_before, os.getloadavg()]
    (keep / "report.json").write_text(json.dumps(report, indent=1, default=str))
    profile_report.print_report(report, streams=args.streams, window=args.window)
    print(f"\nraw profiles and report.json in {keep}")
    return 0


def _child_roles(front: psutil.Process) -> dict[int, str]:
    """The front's children: engine processes, and multiprocessing's resource tracker."""
    roles = {}
    engines = 0
    for child in front.children(recursive=True):
        if any("resource_tracker" in part for part in child.cmdline()):
            roles[child.pid] = "tracker"
        else:
            roles[child.pid] = f"engine{engines}"
            engines += 1
    return roles


def _packets_per_second(clip: Path) -> float:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-show_entries",
            "format=duration",
            "-of",
            "json",
            str(clip),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    packets = sum(int(s["nb_read_packets"]) for s in info["streams"])
    return packets / float(info["format"]["duration"])


# -- phases -----------------------------------------------------------------------


def _cpu_phase(roles: dict[int, str], window: float) -> dict[str, float]:
    procs = {pid: psutil.Process(pid) for pid in roles}
    start = {pid: _cpu_seconds([p]) for pid, p in procs.items()}
    begun = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - begun
    return {
        roles[pid]: (_cpu_seconds([p]) - start[pid]) / elapsed * 100 for pid, p in procs.items()
    }


def _syscall_phase(roles: dict[int, str], window: float, keep: Path) -> dict[str, dict[str, int]]:
    events = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS])
    runs = {
        pid: subprocess.Popen(
            ["perf", "stat", "-x,", "-e", events, "-p", str(pid), "--", "sleep", str(window)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in roles
    }
    counted = {}
    for pid, run in runs.items():
        _, err = run.communicate()
        (keep / f"syscalls-{roles[pid]}.csv").write_text(err)
        counted[roles[pid]] = {
            name.replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all"): n
            for name, n in profiles.parse_perf_stat_csv(err).items()
        }
    return counted


def _spy_phase(
    spy: str, roles: dict[int, str], window: float, keep: Path
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    files = _spy(spy, roles, window, keep, "native", ["--native"])
    stages, libraries = {}, {}
    for role, file in files.items():
        lines = file.read_text().splitlines() if file.exists() else []
        stages[role] = dict(profiles.breakdown(lines, key="stage"))
        libraries[role] = dict(profiles.breakdown(lines, key="library"))
    return stages, libraries


def _gil_phase(spy: str, roles: dict[int, str], window: float, keep: Path) -> dict[str, float]:
    files = _spy(spy, roles, window, keep, "gil", ["--gil"])
    held = {}
    for role, file in files.items():
        lines = file.read_text().splitlines() if file.exists() else []
        samples = sum(int(line.rpartition(" ")[2]) for line in lines if line.strip())
        held[role] = samples / (SAMPLE_RATE * window) * 100
    return held


def _spy(
    spy: str, roles: dict[int, str], window: float, keep: Path, tag: str, extra: list[str]
) -> dict[str, Path]:
    files = {role: keep / f"pyspy-{tag}-{role}.txt" for role in roles.values()}
    runs = [
        subprocess.Popen(
            [
                spy,
                "record",
                "-r",
                str(SAMPLE_RATE),
                "-d",
                str(int(window)),
                "-f",
                "raw",
                *extra,
                "-o",
                str(files[role]),
                "-p",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, role in roles.items()
    ]
    for run in runs:
        run.wait()
    return files


def _perf_record_phase(roles: dict[int, str], window: float, keep: Path) -> dict[str, str]:
    shares = {}
    for pid, role in roles.items():
        data = keep / f"perf-{role}.data"
        subprocess.run(
            [
                "perf",
                "record",
                "-q",
                "-F",
                "499",
                "-o",
                str(data),
                "-p",
                str(pid),
                "--",
                "sleep",
                str(window / max(len(roles), 1)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        out = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--sort",
                "dso",
                "--stdio",
                "-q",
                "--percent-limit",
                "1",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        shares[role] = out.stdout
        (keep / f"perf-{role}.txt").write_text(out.stdout)
    return shares


def _allocation_phase(
    roles: dict[int, str], window: float, keep: Path
) -> dict[str, dict[str, int]]:
    engine = next(pid for pid, role in roles.items() if role.startswith("engine"))
    maps = Path(f"/proc/{engine}/maps").read_text()
    events = []
    try:
        for name, library, function in PROBES:
            path = next((line.split()[-1] for line in maps.splitlines() if library in line), None)
            if path is None:
                continue
            added = subprocess.run(
                ["perf", "probe", "-q", "-x", path, "-a", f"{PROBE_GROUP}:{name}={function}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if added.returncode == 0:
                events.append(f"{PROBE_GROUP}:{name}")
        counted = {}
        for pid, role in roles.items():
            if not role.startswith("engine") or not events:
                continue
            run = subprocess.run(
                [
                    "perf",
                    "stat",
                    "-x,",
                    "-e",
                    ",".join(events),
                    "-p",
                    str(pid),
                    "--",
                    "sleep",
                    str(window),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            (keep / f"allocations-{role}.csv").write_text(run.stderr)
            counted[role] = {
                name.split(":")[-1]: n
                for name, n in profiles.parse_perf_stat_csv(run.stderr).items()
            }
        return counted
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(
                ["perf", "probe", "-q", "-d", f"{PROBE_GROUP}:*"],
                capture_output=True,
                check=False,
            )


if __name__ == "__main__":
    sys.exit(main())
