"""Recording benchmark: what recording costs per stream per minute, against not recording.

The same N passthrough RTMP → HLS streams (a 1 Mbit/s H.264 + AAC clip with a
2 s GOP, published in real time by the FFmpeg CLI, ten outputs per sender
process; 2 s segments on tmpfs) are received by one standalone camstream
worker three times in one run:

- not recorded (the baseline);
- recorded with the default grouping (spec.recording.groupSeconds 60);
- recorded with the smallest grouping (10 s), to show what grouping saves.

The recordings go to a real S3 store (SeaweedFS on loopback, as in the
tests). For each run the script measures, per stream and per minute of the
window: PUTs (objects that reached the store, counted by listing it, and the
worker's own upload counter), bytes put, and the worker's CPU (user + system
of all its processes, in % of one core); and the ratios against the baseline
measured in the same run. One PUT per 2 s segment would be 30 per minute.

    .venv/bin/python bench/recording_bench.py                      # N = 20, 120 s windows
    .venv/bin/python bench/recording_bench.py --streams 50 --window 180

Target (issue 11): at most 1 PUT per camera per minute at default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_bench import _cpu_seconds, _process_tree, _send, _stop  # noqa: E402
from camstream.storage.s3 import S3Store  # noqa: E402
from tests.harness.cameras import free_port, make_clip  # noqa: E402
from tests.harness.objectstore import BUCKET, SeaweedS3  # noqa: E402

SENDERS_PER_PROCESS = 10
PUTS_PER_MINUTE_TARGET = 1.0


@dataclass(frozen=True)
class Run:
    label: str
    group_seconds: int | None  # None: not recorded
    streams: int
    minutes: float
    cpu_percent: float  # of one core, the worker's processes together
    puts: int  # group objects that reached the store during the window
    uploads: int  # the worker's own counter over the window
    put_bytes: int

    def per_stream_minute(self, value: float) -> float:
        return value / self.streams / self.minutes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=0, help="engine processes (0: per core)")
    args = parser.parse_args()
    clip = make_clip(seconds=10, size="640x360", fps=25, bitrate_kbps=1000, gop_seconds=2)
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as work:
        with SeaweedS3(Path(work) / "s3") as s3:
            asyncio.run(_bucket(s3))
            runs = [
                measure(s3, clip, args, None, "not recorded"),
                measure(s3, clip, args, 60, "recorded, 60 s groups (default)"),
                measure(s3, clip, args, 10, "recorded, 10 s groups"),
            ]
    return report(runs)


async def _store(s3: SeaweedS3) -> S3Store:
    return await S3Store(
        endpoint=s3.endpoint,
        bucket=BUCKET,
        region="us-east-1",
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    ).start()


async def _bucket(s3: SeaweedS3) -> None:
    store = await _store(s3)
    await store.create_bucket()
    await store.close()


async def _stored(s3: SeaweedS3, prefix: str) -> tuple[int, int]:
    """(group objects, bytes) under prefix."""
    store = await _store(s3)
    count = size = 0
    try:
        async for info in store.objects(prefix):
            if info.key.endswith(".ts"):
                count += 1
                size += info.size
    finally:
        await store.close()
    return count, size


def measure(
    s3: SeaweedS3, clip: Path, args: argparse.Namespace, group: int | None, label: str
) -> Run:
    namespace = f"bench-{group or 0}"
    manifests = []
    for i in range(args.streams):
        spec: dict[str, object] = {
            "source": {"protocol": "rtmp", "streamKeySecretRef": {"name": f"key{i}"}},
        }
        if group is not None:
            spec["recording"] = {"enabled": True, "groupSeconds": group, "dvrMinutes": 0}
        manifests.append(
            {"kind": "CameraStream", "metadata": {"name": f"cam{i}", "namespace": namespace},
             "spec": spec}
        )  # fmt: skip
        manifests.append(
            {"kind": "Secret", "metadata": {"name": f"key{i}", "namespace": namespace},
             "stringData": {"streamKey": f"k{i}"}}
        )  # fmt: skip
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-rec-hls-") as out:
        manifest = Path(out) / "streams.yaml"
        manifest.write_text(yaml.safe_dump_all(manifests))
        rtmp_port, http_port = free_port(), free_port()
        processes = args.processes or os.cpu_count() or 1
        worker = subprocess.Popen(
            [sys.executable, "-m", "camstream_cli", "--log-level", "WARNING", "run",
             "-f", str(manifest), "--hls-dir", str(Path(out) / "hls"),
             "--rtmp-port", str(rtmp_port), "--http-port", str(http_port),
             "--processes", str(processes)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **s3.env()},
        )  # fmt: skip
        time.sleep(3.0)
        urls = [
            f"rtmp://127.0.0.1:{rtmp_port}/{namespace}/cam{i}/k{i}" for i in range(args.streams)
        ]
        senders = [
            _send(urls[i : i + SENDERS_PER_PROCESS], clip)
            for i in range(0, len(urls), SENDERS_PER_PROCESS)
        ]
        try:
            time.sleep(args.warmup)
            procs = _process_tree([worker])
            cpu_before = _cpu_seconds(procs)
            puts_before, bytes_before = asyncio.run(_stored(s3, f"{namespace}/"))
            uploads_before = _uploads(http_port)
            started = time.monotonic()
            time.sleep(args.window)
            elapsed = time.monotonic() - started
            cpu = (_cpu_seconds(_process_tree([worker])) - cpu_before) / elapsed * 100
            puts_after, bytes_after = asyncio.run(_stored(s3, f"{namespace}/"))
            uploads = _uploads(http_port) - uploads_before
        finally:
            _stop(senders)
            _stop([worker])
    run = Run(
        label,
        group,
        args.streams,
        elapsed / 60,
        cpu,
        puts_after - puts_before,
        uploads,
        bytes_after - bytes_before,
    )
    print(f"  {label}: done", file=sys.stderr, flush=True)
    return run


def _uploads(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return 0
    match = re.search(r"^camstream_recording_uploads_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def report(runs: list[Run]) -> int:
    base = runs[0]
    header = (
        f"{'run':<34} | {'PUTs/stream/min':>15} | {'uploads/stream/min':>18} | "
        f"{'MB put/stream/min':>17} | {'CPU %/stream':>12} | {'CPU ratio':>9}"
    )
    print(f"N = {base.streams} streams, 1 Mbit/s, 2 s segments, {base.minutes:.1f} min per run")
    print(header)
    print("-" * len(header))
    for run in runs:
        cpu = run.cpu_percent / run.streams
        print(
            f"{run.label:<34} | {run.per_stream_minute(run.puts):>15.2f} | "
            f"{run.per_stream_minute(run.uploads):>18.2f} | "
            f"{run.per_stream_minute(run.put_bytes) / 1e6:>17.2f} | {cpu:>12.3f} | "
            f"{cpu / max(base.cpu_percent / base.streams, 1e-9):>8.2f}x"
        )
    print("(one PUT per 2 s segment would be 30.00 PUTs/stream/min)")
    default = runs[1]
    puts = default.per_stream_minute(max(default.puts, default.uploads))
    ok = 0 < puts <= PUTS_PER_MINUTE_TARGET + 0.05  # a group may close a moment early
    print(
        f"{'PASS' if ok else 'FAIL'}: {puts:.2f} PUTs per camera per minute at default settings "
        f"(target <= {PUTS_PER_MINUTE_TARGET:.0f})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
