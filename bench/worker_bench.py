"""Worker benchmark: N passthrough RTMP → HLS streams, camstream vs MediaMTX vs FFmpeg.

All three receivers get the same senders (a 1 Mbit/s H.264 + AAC clip with a
2 s GOP, published in real time over RTMP by the FFmpeg CLI, ten outputs per
sender process) and write the same HLS (MPEG-TS, 2 s segments, 6 in the
window) to tmpfs. The baselines are what people run today: one `ffmpeg
-listen 1 -i rtmp://... -c copy -f hls` process per camera, and MediaMTX
(v1.20.1, built by scripts/install-mediamtx.sh; `hlsAlwaysRemux`, the MPEG-TS
variant, segments in a tmpfs directory: bench/mediamtx.py), the server people
pick instead (issue 12). For each N the script measures the receivers' CPU
over a fixed window and their memory at its end, counts the streams whose
playlist gained a segment during the window (fetched over HTTP from camstream
and MediaMTX, read from disk for FFmpeg, which serves nothing), and prints the
per-stream figures and the ratios camstream / MediaMTX and camstream /
FFmpeg, all measured in the same run.

    .venv/bin/python bench/worker_bench.py                # N = 1, 10, 50, 100
    .venv/bin/python bench/worker_bench.py --streams 50 200 --window 60

CPU is in % of one core per stream (user + system time of the receiver
processes over the window); memory is RSS and PSS (proportional set size: the
shared libraries counted once across all the FFmpeg processes) per stream.
Senders are not counted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import mediamtx, playlists  # noqa: E402
from camstream import wire  # noqa: E402
from tests.harness.cameras import free_port, make_clip, wait_for_port  # noqa: E402
from tests.harness.srt import udp_free_port  # noqa: E402

SENDERS_PER_PROCESS = 10
# Issue 2: camstream against one FFmpeg per stream.
TARGETS = {"cpu": 0.8, "pss": 0.25, "streams_per_core": 150}
# Issue 12: camstream against MediaMTX (part 3 of the issue is to meet them).
PEER_TARGETS = {"cpu": 0.8, "pss": 1.0}
FETCH_THREADS = 16

# A receiver's live streams: stream -> number of its newest segment.
Positions = Callable[[], dict[str, int]]


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
    parser.add_argument(
        "--ffmpeg-up-to",
        type=int,
        default=None,
        help="measure FFmpeg only for N up to this (a process per stream saturates "
        "two cores near N = 200: beyond it no stream is live to count)",
    )
    parser.add_argument("--skip-mediamtx", action="store_true")
    args = parser.parse_args()
    if not args.skip_mediamtx and not os.access(mediamtx.binary(), os.X_OK):
        parser.error(
            f"no MediaMTX at {mediamtx.binary()}: run scripts/install-mediamtx.sh "
            "(make bench does) or pass --skip-mediamtx"
        )

    clip = make_clip(seconds=10, bitrate_kbps=1000, gop_seconds=2, fps=25, container="flv")
    results: list[Row] = []
    for count in args.streams:
        row = Row(
            ffmpeg=None
            if args.skip_ffmpeg or (args.ffmpeg_up_to is not None and count > args.ffmpeg_up_to)
            else measure_ffmpeg(count, clip, args),
            mediamtx=None if args.skip_mediamtx else measure_mediamtx(count, clip, args),
            ours=measure_camstream(count, clip, args),
        )
        results.append(row)
        print_row(row, flush=True)
    return print_summary(results, args)


@dataclass(frozen=True)
class Row:
    """One N: the three receivers, measured one after the other with the same senders."""

    ffmpeg: Sample | None
    mediamtx: Sample | None
    ours: Sample


# -- receivers -------------------------------------------------------------------


def measure_ffmpeg(count: int, clip: Path, args: argparse.Namespace) -> Sample:
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-ffmpeg-") as out:
        ports = _distinct_ports(count)
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
        files = [Path(out) / f"s{index}" / "index.m3u8" for index in range(count)]
        try:
            return _measure("ffmpeg", count, receivers, urls, clip, _read_all(files), args)
        finally:
            _stop(receivers)


def measure_mediamtx(count: int, clip: Path, args: argparse.Namespace) -> Sample:
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-mediamtx-") as out:
        rtmp_port, hls_port = _distinct_ports(2)
        config = Path(out) / "mediamtx.yml"
        config.write_text(
            mediamtx.render_config(
                rtmp_port=rtmp_port, hls_port=hls_port, hls_dir=Path(out) / "hls"
            )
        )
        log = (Path(out) / "mediamtx.log").open("wb")
        server = subprocess.Popen(
            [str(mediamtx.binary()), str(config)],
            cwd=out,  # anything it writes beside its config stays in the temporary folder
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(rtmp_port)
            wait_for_port(hls_port)
            paths = [f"live/s{index}" for index in range(count)]
            urls = [mediamtx.rtmp_url(rtmp_port=rtmp_port, path=path) for path in paths]
            playlists_at = [mediamtx.playlist_url(hls_port=hls_port, path=p) for p in paths]
            return _measure("mediamtx", count, [server], urls, clip, _fetch_all(playlists_at), args)
        finally:
            _stop([server])
            log.close()
            if server.returncode not in (0, -signal.SIGTERM):
                tail = (Path(out) / "mediamtx.log").read_text(errors="replace")[-2000:]
                print(f"mediamtx exited with {server.returncode}:\n{tail}", file=sys.stderr)


def measure_camstream(count: int, clip: Path, args: argparse.Namespace) -> Sample:
    with camstream_receiver(count, processes=args.processes) as (worker, urls, playlists_at):
        return _measure("camstream", count, [worker], urls, clip, _fetch_all(playlists_at), args)


@contextlib.contextmanager
def camstream_receiver(
    count: int, *, processes: int, protocol: str = "rtmp"
) -> Iterator[tuple[subprocess.Popen[bytes], list[str], list[str]]]:
    """A standalone camstream worker for `count` push streams (`protocol` "rtmp" or "srt",
    each stream's passphrase `srt_passphrase(i)`), HLS on tmpfs.

    Yields the worker process, the URL each sender publishes to, and each
    stream's playlist URL. `processes` 0 means one engine process per core.
    Also used by bench/worker_profile.py and bench/edge_bench.py.
    """
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-camstream-") as out:
        manifests = []
        for index in range(count):
            if protocol == "srt":
                ref = {"srt": {"passphraseSecretRef": {"name": f"cam{index}-key"}}}
                secret = {"passphrase": srt_passphrase(index)}
            else:
                ref = {"streamKeySecretRef": {"name": f"cam{index}-key"}}
                secret = {"streamKey": f"key{index}"}
            manifests.append(
                {
                    "kind": "CameraStream",
                    "metadata": {"name": f"cam{index}"},
                    "spec": {"source": {"protocol": protocol, **ref}},
                }
            )
            manifests.append(
                {"kind": "Secret", "metadata": {"name": f"cam{index}-key"}, "stringData": secret}
            )
        manifest_path = Path(out) / "streams.yaml"
        manifest_path.write_text(yaml.safe_dump_all(manifests))
        rtmp_port, http_port = _distinct_ports(2)
        srt_port = udp_free_port()
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
        if protocol == "srt":
            command += ["--srt-port", str(srt_port)]
        processes = processes or os.cpu_count() or 1
        if processes > 1:
            command += ["--processes", str(processes)]
        worker = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True, stdout=subprocess.DEVNULL
        )
        try:
            time.sleep(3.0)
            if protocol == "srt":
                urls = [
                    f"srt://127.0.0.1:{srt_port}?streamid=default/cam{i}"
                    f"&passphrase={srt_passphrase(i)}&pkt_size=1316"
                    for i in range(count)
                ]
            else:
                urls = [f"rtmp://127.0.0.1:{rtmp_port}/default/cam{i}/key{i}" for i in range(count)]
            playlists_at = [
                f"http://127.0.0.1:{http_port}{wire.playlist_path('default', f'cam{i}')}"
                for i in range(count)
            ]
            yield worker, urls, playlists_at
        finally:
            _stop([worker])


def _measure(
    name: str,
    count: int,
    receivers: list[subprocess.Popen[bytes]],
    urls: list[str],
    clip: Path,
    positions: Positions,
    args: argparse.Namespace,
) -> Sample:
    senders = [
        _send(urls[i : i + SENDERS_PER_PROCESS], clip)
        for i in range(0, len(urls), SENDERS_PER_PROCESS)
    ]
    try:
        time.sleep(args.warmup)
        # The playlists are fetched outside the CPU window: serving them is not
        # what the window measures.
        written_before = positions()
        procs = _process_tree(receivers)
        start_each = {p.pid: _cpu_seconds([p]) for p in procs}
        start = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - start
        procs = _process_tree(receivers)
        each = {
            p.pid: (_cpu_seconds([p]) - start_each.get(p.pid, 0.0)) / elapsed * 100 for p in procs
        }
        cpu = sum(each.values())
        rss, pss = _memory_mb(procs)
        written_after = positions()
        live = sum(1 for key, n in written_after.items() if n > written_before.get(key, 0))
        return Sample(name, count, cpu, rss, pss, live, max(each.values(), default=0.0))
    finally:
        _stop(senders)


def srt_passphrase(index: int) -> str:
    """Stream `index`'s SRT passphrase in the benches (10 to 79 characters, SRT's rule)."""
    return f"bench-passphrase-{index}"


def _send(urls: list[str], clip: Path) -> subprocess.Popen[bytes]:
    """One FFmpeg process publishing the clip, looped in real time, to each URL (an srt://
    URL gets MPEG-TS, SRT's payload; the others FLV)."""
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
        muxer = "mpegts" if url.startswith("srt://") else "flv"
        command += ["-map", "0", "-c", "copy", "-f", muxer, url]
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


def _distinct_ports(count: int) -> list[int]:
    """`count` different free ports.

    free_port() releases the port it found, so two calls can return the same
    one: two FFmpeg receivers then race for it, one fails, and the sender
    process that feeds it exits with all ten of its streams (seen at N = 50).
    """
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _read_all(files: list[Path]) -> Positions:
    """Each playlist file's newest segment (FFmpeg writes files and serves nothing)."""

    def read() -> dict[str, int]:
        newest: dict[str, int] = {}
        for file in files:
            with contextlib.suppress(OSError, playlists.PlaylistError):
                newest[str(file)] = playlists.newest_segment(file.read_text())
        return newest

    return read


def _fetch_all(urls: list[str]) -> Positions:
    """Each playlist's newest segment, fetched over HTTP as a player would (16 at a time)."""

    def fetch() -> dict[str, int]:
        with concurrent.futures.ThreadPoolExecutor(FETCH_THREADS) as pool:
            found = dict(zip(urls, pool.map(_fetch_one, urls), strict=True))
        return {url: n for url, n in found.items() if n is not None}

    return fetch


def _fetch_one(url: str) -> int | None:
    """None when the receiver has no playlist for the stream (yet)."""
    try:
        text = _get(url)
        variant = playlists.variant_uri(text, url)
        return playlists.newest_segment(_get(variant) if variant else text)
    except (OSError, playlists.PlaylistError):  # urllib's errors are OSErrors
        return None


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8", errors="replace")


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


def print_row(row: Row, *, flush: bool) -> None:
    if not getattr(print_row, "printed", False):
        print(HEADER)
        print("-" * len(HEADER))
        print_row.printed = True  # type: ignore[attr-defined]
    for sample in (row.ffmpeg, row.mediamtx, row.ours):
        if sample is None:
            continue
        print(
            f"{sample.streams:>4} | {sample.receiver:<9} | {sample.live:>4} | "
            f"{sample.cpu_per_stream:>12.2f} | {sample.rss_per_stream:>13.1f} | "
            f"{sample.pss_per_stream:>13.2f} | {sample.cpu_percent:>11.1f} | "
            f"{sample.busiest_percent:>14.1f}"
        )
    for label, baseline in (("/mediamtx", row.mediamtx), ("/ffmpeg", row.ffmpeg)):
        if baseline is None:
            continue
        print(
            f"{'':>4} | {label:<9} | {'':>4} | "
            f"{_ratio(row.ours.cpu_per_stream, baseline.cpu_per_stream):>12} | "
            f"{_ratio(row.ours.rss_per_stream, baseline.rss_per_stream):>13} | "
            f"{_ratio(row.ours.pss_per_stream, baseline.pss_per_stream):>13} |"
        )
    if flush:
        sys.stdout.flush()


def _ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}x" if baseline else "-"


def print_summary(results: list[Row], args: argparse.Namespace) -> int:
    last = results[-1]
    largest = last.ours
    failures = 0
    print()
    for sample in (last.ffmpeg, last.mediamtx, largest):
        if sample is not None and sample.live < sample.streams:
            verdict = "FAIL" if sample is largest else "NOTE"
            failures += verdict == "FAIL"
            print(
                f"{verdict}: only {sample.live}/{sample.streams} {sample.receiver} streams "
                "were live"
            )
    for baseline, targets, source in (
        (last.ffmpeg, TARGETS, "issue 2"),
        (last.mediamtx, PEER_TARGETS, "issue 12"),
    ):
        if baseline is None:
            continue
        cpu_ratio = largest.cpu_per_stream / baseline.cpu_per_stream
        pss_ratio = largest.pss_per_stream / baseline.pss_per_stream
        for label, value, target in (
            ("CPU per stream", cpu_ratio, targets["cpu"]),
            ("PSS per stream", pss_ratio, targets["pss"]),
        ):
            verdict = "PASS" if value <= target else "FAIL"
            failures += verdict == "FAIL"
            print(
                f"{verdict}: {label} at N={largest.streams}: {value:.2f} x {baseline.receiver} "
                f"(target <= {target}, {source})"
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
