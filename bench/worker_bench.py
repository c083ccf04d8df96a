"""Worker benchmark: N passthrough RTMP → HLS streams, camstream vs one FFmpeg per stream.

Both receivers get the same senders (a 1 Mbit/s H.264 + AAC clip with a 2 s
GOP, published in real time over RTMP by the FFmpeg CLI, ten outputs per
sender process) and write the same HLS (2 s segments, 6 in the window) to tmpfs.
The baseline is what people run today: one `ffmpeg -listen 1 -i rtmp://...
-c copy -f hls` process per camera. For each N the script measures the
receivers' CPU over a fixed window and their memory at its end, and prints the
per-stream figures and the ratios camstream / FFmpeg, measured in the same run.

    .venv/bin/python bench/worker_bench.py                # N = 1, 10, 50, 100
    .venv/bin/python bench/worker_bench.py --streams 1 10 50 100 150 200 --processes 2

CPU is in % of one core per stream (user + system time of the receiver
processes over the window); memory is RSS and PSS (proportional set size: the
shared libraries counted once across all the FFmpeg processes) per stream.
Senders are not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.cameras import free_port, make_clip  # noqa: E402

SENDERS_PER_PROCESS = 10
TARGETS = {"cpu": 0.8, "pss": 0.25, "streams_per_core": 150}


@dataclass(frozen=True)
class Sample:
    receiver: str
    streams: int
    cpu_percent: float  # of one core, all receiver processes together
    rss_mb: float
    pss_mb: float
    live: int  # streams that wrote a segment during the window
    busiest_percent: float  # CPU of the busiest receiver process: a GIL-bound worker caps at 100

    # Per stream that was live: a receiver that failed to start must not
    # make the others look cheaper.
    @property
    def cpu_per_stream(self) -> float:
        return self.cpu_percent / max(self.live, 1)

    @property
    def pss_per_stream(self) -> float:
        return self.pss_mb / max(self.live, 1)

    @property
    def rss_per_stream(self) -> float:
        return self.rss_mb / max(self.live, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--processes", type=int, default=0, help="camstream engine processes (0 = one per core)"
    )
    parser.add_argument("--skip-ffmpeg", action="store_true")
    args = parser.parse_args()

    clip = make_clip(seconds=10, bitrate_kbps=1000, gop_seconds=2, fps=25, container="flv")
    results: list[tuple[Sample | None, Sample]] = []
    for count in args.streams:
        baseline = None if args.skip_ffmpeg else measure_ffmpeg(count, clip, args)
        ours = measure_camstream(count, clip, args)
        results.append((baseline, ours))
        print_row(baseline, ours, flush=True)
    return print_summary(results, args)


# -- receivers -------------------------------------------------------------------


def measure_ffmpeg(count: int, clip: Path, args: argparse.Namespace) -> Sample:
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-ffmpeg-") as out:
        ports = [free_port() for _ in range(count)]
        receivers = []
        for index, port in enumerate(ports):
            folder = Path(out) / f"s{index}"
            folder.mkdir()
            receivers.append(
                subprocess.Popen(
                    [
                        "ffmpeg",
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-listen",
                        "1",
                        "-i",
                        f"rtmp://127.0.0.1:{port}/live/s{index}",
                        "-c",
                        "copy",
                        "-f",
                        "hls",
                        "-hls_time",
                        "2",
                        "-hls_list_size",
                        "6",
                        "-hls_flags",
                        "delete_segments",
                        str(folder / "index.m3u8"),
                    ],
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        time.sleep(1.0)  # let every ffmpeg listen before the senders connect
        urls = [f"rtmp://127.0.0.1:{port}/live/s{index}" for index, port in enumerate(ports)]
        try:
            return _measure("ffmpeg", count, receivers, urls, clip, Path(out), args)
        finally:
            _stop(receivers)


def measure_camstream(count: int, clip: Path, args: argparse.Namespace) -> Sample:
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-camstream-") as out:
        manifests = []
        for index in range(count):
            manifests.append(
                {
                    "kind": "CameraStream",
                    "metadata": {"name": f"cam{index}"},
                    "spec": {
                        "source": {
                            "protocol": "rtmp",
                            "streamKeySecretRef": {"name": f"cam{index}-key"},
                        }
                    },
                }
            )
            manifests.append(
                {
                    "kind": "Secret",
                    "metadata": {"name": f"cam{index}-key"},
                    "stringData": {"streamKey": f"key{index}"},
                }
            )
        manifest_path = Path(out) / "streams.yaml"
        manifest_path.write_text(yaml.safe_dump_all(manifests))
        rtmp_port, http_port = free_port(), free_port()
        command = [
            sys.executable,
            "-m",
            "camstream_cli",
            "--log-level",
            "WARNING",
            "run",
            "-f",
            str(manifest_path),
            "--hls-dir",
            str(Path(out) / "hls"),
            "--rtmp-port",
            str(rtmp_port),
            "--http-port",
            str(http_port),
        ]
        processes = args.processes or os.cpu_count() or 1
        if processes > 1:
            command += ["--processes", str(processes)]
        worker = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True, stdout=subprocess.DEVNULL
        )
        time.sleep(3.0)
        urls = [f"rtmp://127.0.0.1:{rtmp_port}/default/cam{i}/key{i}" for i in range(count)]
        try:
            return _measure("camstream", count, [worker], urls, clip, Path(out) / "hls", args)
        finally:
            _stop([worker])


def _measure(
    name: str,
    count: int,
    receivers: list[subprocess.Popen[bytes]],
    urls: list[str],
    clip: Path,
    out: Path,
    args: argparse.Namespace,
) -> Sample:
    senders = [
        _send(urls[i : i + SENDERS_PER_PROCESS], clip)
        for i in range(0, len(urls), SENDERS_PER_PROCESS)
    ]
    try:
        time.sleep(args.warmup)
        procs = _process_tree(receivers)
        start_each = {p.pid: _cpu_seconds([p]) for p in procs}
        start = time.monotonic()
        written_before = _segments(out)
        time.sleep(args.window)
        elapsed = time.monotonic() - start
        procs = _process_tree(receivers)
        each = {
            p.pid: (_cpu_seconds([p]) - start_each.get(p.pid, 0.0)) / elapsed * 100 for p in procs
        }
        cpu = sum(each.values())
        rss, pss = _memory_mb(procs)
        written_after = _segments(out)
        live = sum(1 for key, n in written_after.items() if n > written_before.get(key, 0))
        return Sample(name, count, cpu, rss, pss, live, max(each.values(), default=0.0))
    finally:
        _stop(senders)


def _send(urls: list[str], clip: Path) -> subprocess.Popen[bytes]:
    """One FFmpeg process publishing the clip, looped in real time, to each URL."""
    command = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(clip),
    ]
    for url in urls:
        command += ["-map", "0", "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)


def _process_tree(roots: list[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    found = []
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(root.pid)
            found.append(parent)
            found.extend(parent.children(recursive=True))
    return found


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    rss = pss = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            info = proc.memory_full_info()
            rss += info.rss
            pss += info.pss
    return rss / 2**20, pss / 2**20


def _segments(root: Path) -> dict[str, int]:
    """Newest segment number per stream folder (from the playlists)."""
    newest: dict[str, int] = {}
    for playlist in root.rglob("index.m3u8"):
        with contextlib.suppress(OSError):
            text = playlist.read_text()
            sequence = next(
                (
                    int(line.split(":")[1])
                    for line in text.splitlines()
                    if line.startswith("#EXT-X-MEDIA-SEQUENCE:")
                ),
                0,
            )
            newest[str(playlist.parent)] = sequence + sum(
                1 for line in text.splitlines() if line and not line.startswith("#")
            )
    return newest


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- report ----------------------------------------------------------------------

HEADER = (
    f"{'N':>4} | {'receiver':<9} | {'live':>4} | {'CPU %/stream':>12} | "
    f"{'RSS MB/stream':>13} | {'PSS MB/stream':>13} | {'CPU total %':>11} | "
    f"{'busiest proc %':>14}"
)


def print_row(baseline: Sample | None, ours: Sample, *, flush: bool) -> None:
    if not getattr(print_row, "printed", False):
        print(HEADER)
        print("-" * len(HEADER))
        print_row.printed = True  # type: ignore[attr-defined]
    for sample in (baseline, ours):
        if sample is None:
            continue
        print(
            f"{sample.streams:>4} | {sample.receiver:<9} | {sample.live:>4} | "
            f"{sample.cpu_per_stream:>12.2f} | {sample.rss_per_stream:>13.1f} | "
            f"{sample.pss_per_stream:>13.2f} | {sample.cpu_percent:>11.1f} | "
            f"{sample.busiest_percent:>14.1f}"
        )
    if baseline is not None:
        print(
            f"{'':>4} | {'ratio':<9} | {'':>4} | "
            f"{ours.cpu_per_stream / baseline.cpu_per_stream:>12.2f} | "
            f"{ours.rss_per_stream / baseline.rss_per_stream:>13.2f} | "
            f"{ours.pss_per_stream / baseline.pss_per_stream:>13.2f} |",
            flush=flush,
        )


def print_summary(results: list[tuple[Sample | None, Sample]], args: argparse.Namespace) -> int:
    largest_baseline, largest = results[-1]
    failures = 0
    print()
    if largest.live < largest.streams:
        print(f"FAIL: only {largest.live}/{largest.streams} camstream streams were live")
        failures += 1
    if largest_baseline is not None:
        cpu_ratio = largest.cpu_per_stream / largest_baseline.cpu_per_stream
        pss_ratio = largest.pss_per_stream / largest_baseline.pss_per_stream
        for label, value, target in (
            ("CPU per stream", cpu_ratio, TARGETS["cpu"]),
            ("PSS per stream", pss_ratio, TARGETS["pss"]),
        ):
            verdict = "PASS" if value <= target else "FAIL"
            failures += verdict == "FAIL"
            print(
                f"{verdict}: {label} at N={largest.streams}: {value:.2f} x FFmpeg "
                f"(target <= {target})"
            )
    per_core = 100 / largest.cpu_per_stream if largest.cpu_per_stream else float("inf")
    verdict = "PASS" if per_core >= TARGETS["streams_per_core"] else "FAIL"
    failures += verdict == "FAIL"
    print(
        f"{verdict}: {per_core:.0f} passthrough streams per core at N={largest.streams} "
        f"(target >= {TARGETS['streams_per_core']})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    if shutil.which("ffmpeg") is None:
        sys.exit("the baseline needs the ffmpeg command")
    sys.exit(main())
