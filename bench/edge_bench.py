"""Ingest edge benchmark: what the extra hop costs per pushed stream (#15).

N publishers at 1 Mbit/s (H.264 + AAC, 2 s GOP; bench/worker_bench.py's
senders: the FFmpeg CLI, ten outputs per process, `-re`), RTMP or, with
`--protocol srt`, SRT (MPEG-TS, each stream with its own passphrase), push
through one edge process (`camstream_worker.edge`, the code `camstream
edge` runs) to one standalone camstream worker (`camstream run`, → HLS on
tmpfs, its engine processes as in worker_bench). The edge here reads a
fixed ring document naming that worker instead of watching the ring
ConfigMap, and for SRT its passphrase cache is filled from the benchmark's
own table instead of the API server, before the cameras call (a cold cache
answers a camera's first call with "try again", which FFmpeg does not): the
relay is the same code. For each N it measures, over the same window, the
edge's CPU (% of one core) and memory (PSS, and PSS above the edge's own
idle footprint, measured before the cameras connect) per stream, beside
the worker's, and prints the ratio edge / worker and PASS/FAIL against the
issue's target for the edge: at most 0.1 % of a core and 0.3 MB per stream.

    .venv/bin/python bench/edge_bench.py                 # RTMP, N = 10, 50
    .venv/bin/python bench/edge_bench.py --streams 100 --window 30
    .venv/bin/python bench/edge_bench.py --protocol srt --streams 10 50 100

For SRT the edge terminates each camera's SRT connection (the one libsrt
connection per camera) and relays its MPEG-TS to the worker over a TCP leg
(the worker's leg port: the SRT port's number, over TCP), each leg opened
with the worker's challenge answered by a proof under the edge token.

Streams count only if their playlist gained a segment during the window
(the relay works, not just connects). Senders are not counted, but they
share the machine's cores: at N = 100 the FFmpeg cameras alone take a good
part of a 2-core machine, which the edge's and worker's figures feel.
For SRT both ends get one edge token (as in a cluster: the worker opens its
leg port and the relay starts only with one, and the edge vouches for each
camera with it), and both take more than SRT's default 32 connections per
address, since every camera here calls from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import worker_bench  # noqa: E402
from camstream_worker.protocols.rtmp import forwarded  # noqa: E402
from tests.harness.cameras import free_port, make_clip  # noqa: E402
from tests.harness.srt import udp_free_port  # noqa: E402

if TYPE_CHECKING:
    from camstream_worker.edge.server import Edge

TARGETS = {"cpu": 0.1, "pss": 0.3}  # per stream, issue 15


@dataclass(frozen=True)
class Figures:
    cpu_percent: float
    pss_mb: float


@dataclass(frozen=True)
class Row:
    streams: int
    live: int
    edge: Figures
    edge_idle_pss_mb: float
    worker: Figures
    relayed_mbit_s: float  # written to the worker, all streams
    edge_threads: int


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=0, help="worker engine processes")
    parser.add_argument("--protocol", choices=("rtmp", "srt"), default="rtmp")
    parser.add_argument(
        "--serve-edge", nargs=3, metavar=("PORT", "WORKER_PORT", "STREAMS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.protocol == "srt":
        # Inherited by the edge and the worker: the same token at both ends (the worker
        # opens its leg port and the edge's relay starts only with one), and room for
        # every camera of the run from one address (loopback).
        os.environ.setdefault(forwarded.TOKEN_ENV, secrets.token_hex(16))
        # setdefault: the edge's own process (--serve-edge) keeps the run's figure.
        os.environ.setdefault("CAMSTREAM_SRT_MAX_PER_ADDRESS", str(max(args.streams) + 10))
    if args.serve_edge:
        port, worker_port, streams = args.serve_edge
        return asyncio.run(serve_edge(int(port), int(worker_port), args.protocol, int(streams)))
    container = "ts" if args.protocol == "srt" else "flv"
    clip = make_clip(seconds=10, bitrate_kbps=1000, gop_seconds=2, fps=25, container=container)
    rows = [measure(count, clip, args) for count in args.streams]
    return report(rows, args.protocol)


async def serve_edge(port: int, worker_port: int, protocol: str, streams: int) -> int:
    """The edge with a ring naming one worker on 127.0.0.1 (bench only)."""
    from camstream.handoff import RingDoc
    from camstream_worker.edge.server import Edge, RtmpListener

    doc = RingDoc(partitions=1, version=1, table=None, serving=("w",), addresses={"w": "127.0.0.1"})
    edge = Edge(ring=lambda: doc, worker_rtmp_port=worker_port)
    if protocol == "srt":
        await _add_srt(edge, port, worker_port, streams)
    else:
        edge.add_listener(RtmpListener(edge, "127.0.0.1", port))
    await edge.start()
    stats = Path(f"/dev/shm/edge-bench-{port}.stats")
    try:
        while True:
            await asyncio.sleep(1.0)
            relayed = edge.metrics.bytes_out._value.get()
            _write(stats, f"{edge.stats()['publishing']} {relayed}\n")
    finally:
        _write(stats, None)


async def _add_srt(edge: Edge, port: int, worker_port: int, streams: int) -> None:
    """The edge's SRT port, its passphrase cache holding every bench stream's before it opens."""
    from camstream.spec import StreamKey
    from camstream_worker.edge.passphrases import PassphraseCache
    from camstream_worker.edge.srt_relay import SrtRelay
    from camstream_worker.servers.srt.limits import SrtLimits
    from camstream_worker.servers.srt.listener import Publication

    table = {
        StreamKey("default", f"cam{i}"): Publication(worker_bench.srt_passphrase(i), 120)
        for i in range(streams)
    }

    async def fetch(key: StreamKey) -> Publication | None:
        return table.get(key)

    cache = PassphraseCache(fetch, asyncio.get_running_loop().call_soon_threadsafe)
    for _ in range(1000):  # at most MAX_LOOKUPS in flight: ask again until all are in
        if not [key for key in table if not isinstance(cache.lookup(key), Publication)]:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the passphrase cache did not fill")
    relay = SrtRelay(
        edge, "127.0.0.1", port, worker_srt_port=worker_port, passphrases=cache,
        limits=SrtLimits.from_env(),
    )  # fmt: skip
    edge.add_listener(relay)


def _write(path: Path, text: str | None) -> None:
    """The edge's figures for the measuring process (a tiny file on tmpfs)."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


def measure(count: int, clip: Path, args: argparse.Namespace) -> Row:
    with worker_bench.camstream_receiver(
        count, processes=args.processes, protocol=args.protocol
    ) as (worker, worker_urls, playlists_at):
        positions = worker_bench._fetch_all(playlists_at)
        worker_port = urlsplit(worker_urls[0]).port
        edge_port = udp_free_port() if args.protocol == "srt" else free_port()
        command = [sys.executable, __file__, "--protocol", args.protocol, "--serve-edge"]
        edge = subprocess.Popen(
            [*command, str(edge_port), str(worker_port), str(count)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_for_edge(edge_port, timeout=20)
            time.sleep(1.0)
            edge_idle = worker_bench._memory_mb(worker_bench._process_tree([edge]))[1]
            urls = [u.replace(f":{worker_port}", f":{edge_port}", 1) for u in worker_urls]
            senders = [
                worker_bench._send(urls[i : i + worker_bench.SENDERS_PER_PROCESS], clip)
                for i in range(0, len(urls), worker_bench.SENDERS_PER_PROCESS)
            ]
            try:
                time.sleep(args.warmup)
                before = positions()
                relayed_before = _relayed(edge_port)
                edge_procs = worker_bench._process_tree([edge])
                worker_procs = worker_bench._process_tree([worker])
                edge_cpu = worker_bench._cpu_seconds(edge_procs)
                worker_cpu = worker_bench._cpu_seconds(worker_procs)
                start = time.monotonic()
                time.sleep(args.window)
                elapsed = time.monotonic() - start
                edge_cpu = (worker_bench._cpu_seconds(edge_procs) - edge_cpu) / elapsed * 100
                worker_cpu = (worker_bench._cpu_seconds(worker_procs) - worker_cpu) / elapsed * 100
                edge_pss = worker_bench._memory_mb(edge_procs)[1]
                edge_threads = sum(p.num_threads() for p in edge_procs)
                worker_pss = worker_bench._memory_mb(worker_bench._process_tree([worker]))[1]
                relayed = _relayed(edge_port) - relayed_before
                after = positions()
                live = sum(1 for key, n in after.items() if n > before.get(key, 0))
            finally:
                worker_bench._stop(senders)
        finally:
            worker_bench._stop([edge])
    row = Row(
        streams=count,
        live=live,
        edge=Figures(edge_cpu, edge_pss),
        edge_idle_pss_mb=edge_idle,
        worker=Figures(worker_cpu, worker_pss),
        relayed_mbit_s=relayed * 8 / 1e6 / elapsed,
        edge_threads=edge_threads,
    )
    print_row(row)
    return row


def _wait_for_edge(port: int, timeout: float) -> None:
    """The edge writes its figures once it listens (SRT's UDP port cannot be probed by TCP)."""
    deadline = time.monotonic() + timeout
    while not Path(f"/dev/shm/edge-bench-{port}.stats").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the edge did not start on port {port} in {timeout:g} s")
        time.sleep(0.1)


def _relayed(port: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return float(Path(f"/dev/shm/edge-bench-{port}.stats").read_text().split()[1])
    return 0.0


HEADER = (
    f"{'N':>4} | {'live':>4} | {'edge CPU %/stream':>17} | {'worker CPU %/stream':>19} | "
    f"{'edge/worker':>11} | {'edge PSS MB/stream':>18} | {'above idle':>10} | "
    f"{'worker PSS MB/stream':>20} | {'relayed Mbit/s':>14} | {'edge threads':>12}"
)


def print_row(row: Row) -> None:
    if not getattr(print_row, "printed", False):
        print(HEADER)
        print("-" * len(HEADER))
        print_row.printed = True  # type: ignore[attr-defined]
    n = max(row.live, 1)
    edge_cpu, worker_cpu = row.edge.cpu_percent / n, row.worker.cpu_percent / n
    print(
        f"{row.streams:>4} | {row.live:>4} | {edge_cpu:>17.3f} | {worker_cpu:>19.3f} | "
        f"{edge_cpu / worker_cpu if worker_cpu else 0:>10.2f}x | "
        f"{row.edge.pss_mb / n:>18.3f} | {(row.edge.pss_mb - row.edge_idle_pss_mb) / n:>10.3f} | "
        f"{row.worker.pss_mb / n:>20.2f} | {row.relayed_mbit_s:>14.1f} | {row.edge_threads:>12}",
        flush=True,
    )


def report(rows: list[Row], protocol: str) -> int:
    last = rows[-1]
    n = max(last.live, 1)
    print()
    print(
        f"{protocol} edge at N = {last.streams}: "
        f"{last.edge.cpu_percent / n:.3f} % of a core per stream "
        f"(target {TARGETS['cpu']}), "
        f"{(last.edge.pss_mb - last.edge_idle_pss_mb) / n:.3f} MB PSS per stream above its idle "
        f"{last.edge_idle_pss_mb:.1f} MB (target {TARGETS['pss']}); "
        f"the worker behind it: {last.worker.cpu_percent / n:.3f} % and "
        f"{last.worker.pss_mb / n:.2f} MB per stream"
    )
    ok = True
    for row in rows:
        n = max(row.live, 1)
        cpu = row.edge.cpu_percent / n
        pss = (row.edge.pss_mb - row.edge_idle_pss_mb) / n
        checks = {
            "live": row.live == row.streams,
            "cpu": cpu <= TARGETS["cpu"],
            "pss": pss <= TARGETS["pss"],
        }
        failed = [name for name, passed in checks.items() if not passed]
        ok = ok and not failed
        verdict = "PASS" if not failed else f"FAIL ({', '.join(failed)})"
        print(
            f"{verdict}: {protocol} N = {row.streams}: {row.live} live, edge {cpu:.3f} % "
            f"(≤ {TARGETS['cpu']}) and {pss:.3f} MB (≤ {TARGETS['pss']}) per stream"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
