"""Benchmark: what viewer auth costs the worker's HTTP server per request.

Who runs it: people and CI, before a change to servers/http/access.py,
viewer_jwt.py or playlist_tokens.py lands::

    .venv/bin/python bench/playback_bench.py                 # 6 s per mode, 16 viewers
    .venv/bin/python bench/playback_bench.py --seconds 10 --viewers 32

The worker's real HTTP app (servers/http/server.py, with its limits and
accept loop) runs in a process of its own on loopback and serves three
streams of the same HLS files (a 6-segment playlist, 200 KB segments):

    none     no viewer auth: the baseline, measured in the same run
    signed   ?token= with a signed URL: the token is checked on every request
             and every served playlist is rewritten to carry it
    jwt      Authorization: Bearer with an ES256 JWT (PyJWT), keys from a file

Concurrent viewers (aiohttp, in this process) each loop over "playlist, then
one segment" as a player does. For each mode it prints requests per second,
median and 99th-percentile latency, and the server process's CPU time per
request (user + system, psutil), with the ratio to `none`. Targets, on the
server's CPU per request: signed ≤ 1.5 x none, jwt ≤ 1.5 x none. The one
costly step is a JWT's ECDSA verification (about 250 µs here): viewer_jwt.py
remembers a verified token for a minute, which took jwt from 1.58 x to about
1.25 x. The viewers run on the same machine, so req/s says more about them
than about the server; the server's CPU per request is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = {"signed": 1.5, "jwt": 1.5}
KEY = "bench-signing-key-0123456789abcdef0123"
SEGMENTS = 6
SEGMENT_BYTES = 200_000


def _write_hls(root: Path) -> None:
    for name in ("open", "signed", "jwt"):
        folder = root / "hls" / "default" / name
        folder.mkdir(parents=True)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            "#EXT-X-TARGETDURATION:2",
            "#EXT-X-MEDIA-SEQUENCE:0",
        ]
        for number in range(SEGMENTS):
            (folder / f"seg{number}.ts").write_bytes(os.urandom(SEGMENT_BYTES))
            lines += ["#EXTINF:2.000,", f"seg{number}.ts"]
        (folder / "index.m3u8").write_text("\n".join(lines) + "\n")


def _keys(root: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    (root / "jwt.pem").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private


# -- the server process ---------------------------------------------------------


def serve(root: Path, port: int) -> None:
    """Run the worker's HTTP app on 127.0.0.1:port until killed."""
    from camstream.spec import StreamKey, parse_stream
    from camstream_worker.secrets.static import StaticSecrets
    from camstream_worker.servers.http.server import make_app
    from camstream_worker.servers.http.server import serve as serve_http
    from camstream_worker.servers.http.settings import HttpSettings, JwtSettings
    from camstream_worker.state import Phase, StreamStatus

    modes = {"open": "none", "signed": "signed", "jwt": "jwt"}
    specs = {
        StreamKey("default", name): parse_stream(
            {
                "metadata": {"name": name},
                "spec": {"source": {"protocol": "synthetic"}, "playback": {"auth": {"mode": mode}}},
            }
        )
        for name, mode in modes.items()
    }

    class Streams:
        def statuses(self) -> list[StreamStatus]:
            return [StreamStatus(key=k, protocol="synthetic", phase=Phase.LIVE) for k in specs]

        def status(self, key: StreamKey) -> StreamStatus | None:
            return (
                StreamStatus(key=key, protocol="synthetic", phase=Phase.LIVE)
                if key in specs
                else None
            )

        def spec(self, key: StreamKey) -> Any:
            return specs.get(key)

    secrets = StaticSecrets(
        [{"metadata": {"name": "camstream-playback"}, "stringData": {"signingKey": KEY}}],
        environ={},
    )
    settings = HttpSettings(jwt=JwtSettings(keys_file=root / "jwt.pem"))

    async def main() -> None:
        streams = Streams()
        app = make_app(streams, root / "hls", settings=settings, specs=streams, secrets=secrets)
        await serve_http(app, "127.0.0.1", port)
        print("READY", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the viewers ------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float  # server CPU seconds over the run
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu / max(1, self.requests) * 1e6


async def _viewers(base: str, mode: str, query: dict[str, str], headers: dict[str, str],
                   seconds: float, viewers: int, server: Any) -> Result:  # fmt: skip
    import aiohttp

    name = {"none": "open", "signed": "signed", "jwt": "jwt"}[mode]
    playlist = f"{base}/streams/default/{name}/index.m3u8"
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession, number: int) -> None:
        nonlocal errors
        segment = number % SEGMENTS
        while time.monotonic() < stop:
            for url in (playlist, f"{base}/streams/default/{name}/seg{segment}.ts"):
                started = time.perf_counter()
                async with session.get(url, params=query, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)
            segment = (segment + 1) % SEGMENTS

    before = sum(server.cpu_times()[:2])
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=viewers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, n) for n in range(viewers)))
    elapsed = time.monotonic() - started
    cpu = sum(server.cpu_times()[:2]) - before
    return Result(mode, len(latencies), elapsed, latencies, cpu, errors)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0

    import jwt
    import psutil

    from camstream import playback_tokens

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_hls(root)
        private = _keys(root)
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "READY"
            server = psutil.Process(process.pid)
            expires = int(time.time()) + 3600
            token = playback_tokens.sign(
                KEY.encode(), playback_tokens.Grant("default", "signed", expires)
            )
            bearer = jwt.encode(
                {"aud": "camstream", "exp": expires, "streams": ["default/jwt"]},
                private,
                algorithm="ES256",
            )
            base = f"http://127.0.0.1:{port}"
            runs = [
                ("none", {}, {}),
                ("signed", {"token": token}, {}),
                ("jwt", {}, {"Authorization": f"Bearer {bearer}"}),
            ]
            results = [
                asyncio.run(_viewers(base, m, q, h, args.seconds, args.viewers, server))
                for m, q, h in runs
            ]
        finally:
            process.terminate()
            process.wait(timeout=10)

    baseline = results[0]
    print(f"{args.viewers} viewers, {args.seconds:g} s per mode, playlist + 200 KB segment")
    header = ("mode", "req/s", "p50 ms", "p99 ms", "server µs/req", "ratio", "errors")
    print(f"{header[0]:8} " + " ".join(f"{h:>{max(8, len(h))}}" for h in header[1:]))
    failed = False
    for result in results:
        ratio = result.cpu_per_request_us / baseline.cpu_per_request_us
        print(
            f"{result.mode:8} {result.rate:8.0f} {statistics.median(result.latencies) * 1e3:8.2f} "
            f"{_percentile(result.latencies, 0.99) * 1e3:8.2f} {result.cpu_per_request_us:13.0f} "
            f"{ratio:8.2f} {result.errors:8d}"
        )
        failed |= result.errors > 0
    for mode, target in TARGETS.items():
        result = next(r for r in results if r.mode == mode)
        ratio = result.cpu_per_request_us / baseline.cpu_per_request_us
        verdict = "PASS" if ratio <= target and result.errors == 0 else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{verdict} {mode}: server CPU per request {ratio:.2f} x none (target ≤ {target})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
