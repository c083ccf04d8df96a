"""What the egress proxy costs an HTTP source: CPU per megabyte, against a C reader.

Every byte an `http` source reads passes through the worker's egress proxy
(camstream_worker/sources/egress_proxy.py), a Python copy between two
sockets. This fetches one file of --megabytes from a loopback HTTP server
--repeat times with curl, directly (the baseline: a C client reading the
same bytes) and through the proxy, in the same run, and prints the proxy
process's CPU per megabyte, its ratio to curl's own, and what that is per
stream at camera bitrates. Target: at 4 Mbit/s the proxy costs under 1 % of
a core per stream.

    .venv/bin/python bench/egress_bench.py [--megabytes 200] [--repeat 3]
    .venv/bin/python bench/egress_bench.py --megabytes 20 --repeat 1 --rate 2M   # paced reads
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PROXY = """
import asyncio, sys
from camstream_worker.sources.egress import Egress
from camstream_worker.sources.policy import SourcePolicy

async def main():
    egress = Egress(SourcePolicy())
    print(await egress.http_proxy(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _curl(url: str, proxy: str | None, rate: str | None) -> float:
    """Fetch `url` once (at most `rate` bytes/s, curl's syntax); return curl's own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["curl", "-sS", "-o", "/dev/null", "--noproxy", "" if proxy else "*", url]
    if rate:
        command[1:1] = ["--limit-rate", rate]
    if proxy:
        command[1:1] = ["--proxy", proxy]
    subprocess.run(command, check=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rate",
        default=None,
        help="read at most this fast (curl --limit-rate, e.g. 2M): small reads, as a camera's",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "blob").write_bytes(os.urandom(args.megabytes * 1_000_000))
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", folder],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        proxy = subprocess.Popen([sys.executable, "-c", PROXY], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and proxy.stdout is not None
            port = server.stdout.readline().split(" port ")[1].split(" ")[0]
            proxy_url = proxy.stdout.readline().strip()
            url = f"http://127.0.0.1:{port}/blob"
            _curl(url, None, None)  # warm the page cache and the server
            direct = through = proxied = 0.0
            started = time.monotonic()
            for _ in range(args.repeat):
                direct += _curl(url, None, args.rate)
                before = _cpu(psutil.Process(proxy.pid))
                through += _curl(url, proxy_url, args.rate)
                proxied += _cpu(psutil.Process(proxy.pid)) - before
            elapsed = time.monotonic() - started
        finally:
            for child in (server, proxy):
                child.terminate()
                child.wait(10)
    megabytes = args.megabytes * args.repeat
    per_mb = proxied / megabytes * 1000
    curl_per_mb = direct / megabytes * 1000
    pace = f" at most {args.rate}B/s" if args.rate else ""
    print(f"{megabytes} MB fetched{pace} {args.repeat}x each way in {elapsed:.1f} s")
    print(f"{'':28}{'CPU ms/MB':>10}")
    print(f"{'curl, direct (baseline)':28}{curl_per_mb:>10.2f}")
    print(f"{'curl, through the proxy':28}{through / megabytes * 1000:>10.2f}")
    print(f"{'egress proxy':28}{per_mb:>10.2f}   {per_mb / curl_per_mb:.1f}x the baseline")
    share = {}
    for mbit in (1, 4, 8):
        share[mbit] = per_mb / 1000 * (mbit / 8) * 100  # % of one core
        print(f"per stream at {mbit} Mbit/s: proxy {share[mbit]:.3f} % of a core")
    ok = share[4] < 1.0
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict}: proxy at 4 Mbit/s {share[4]:.3f} % of a core (target < 1 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
