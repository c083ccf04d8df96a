"""SRT ingest receiver cost: one libsrt listener thread for N publishers vs one FFmpeg per stream.

The README's reason for the ctypes binding is that one process and one
thread serve every SRT publisher, where Debian's FFmpeg needs a listener
process per stream. This measures the receiving side only, both in the same
run with the same cameras (FFmpeg looping a 1 Mbit/s H.264 + AAC clip with
`-c copy`, as SRT callers on loopback):

- baseline: one `ffmpeg -i srt://127.0.0.1:PORT?mode=listener -c copy -f
  mpegts /dev/null` per stream: CPU and PSS of those processes;
- camstream: `SrtListener` (servers/srt/listener.py) in this process, every
  publisher relayed into a Unix socket that a drain thread reads (what the
  engine's demuxer reads): CPU of this process, and its PSS growth.

    .venv/bin/python bench/srt_bench.py                 # N = 10, 20 s per phase
    .venv/bin/python bench/srt_bench.py --streams 20 --seconds 30
    .venv/bin/python bench/srt_bench.py --turn 0.05     # the listener as the edge runs it

`--turn`: seconds the listener's thread rests after each wake-up (the
edge's LISTENER_TURN is 0.05; a worker's listener does not rest, 0). With
the edge's turn this is the floor of an SRT camera's cost at the ingest
edge: what receiving it costs before the edge relays a byte.

Prints CPU (% of a core) and memory per stream for both and the ratio
camstream / FFmpeg. PASS means every publisher connected; the figures are
reported, not held to a target yet (no issue sets one for SRT).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camstream.spec import StreamKey
from camstream_worker.servers.srt.listener import Publication, SrtListener
from tests.harness.cameras import make_clip
from tests.harness.srt import udp_free_port

PASSPHRASE = "bench-passphrase-1"


class Drain:
    """The listener's Handler: reads every delivered socket in one thread."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        print(f"refused {key}: {reason}", file=sys.stderr)

    def _run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        known: set[int] = set()
        while not self._stop.is_set():
            for sock in list(self.sockets):
                if sock.fileno() not in known:
                    known.add(sock.fileno())
                    selector.register(sock, selectors.EVENT_READ)
            for key, _ in selector.select(0.1):
                try:
                    self.bytes += len(key.fileobj.recv(1 << 16))  # type: ignore[union-attr]
                except BlockingIOError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def cameras(ports_ids: list[tuple[int, str]], clip: Path) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(clip),
                "-c",
                "copy",
                "-f",
                "mpegts",
                f"srt://127.0.0.1:{port}?streamid={sid}&passphrase={PASSPHRASE}&pkt_size=1316",
            ],
            stdin=subprocess.DEVNULL,
        )
        for port, sid in ports_ids
    ]


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def memory(processes: list[psutil.Process]) -> tuple[float, float]:
    """(PSS, RSS) in bytes, added up."""
    infos = [p.memory_full_info() for p in processes]
    return sum(i.pss for i in infos), sum(i.rss for i in infos)


def baseline(streams: int, seconds: float, clip: Path) -> tuple[float, float, float]:
    ports = [udp_free_port() for _ in range(streams)]
    receivers = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                f"srt://127.0.0.1:{port}?mode=listener&passphrase={PASSPHRASE}",
                "-c",
                "copy",
                "-f",
                "mpegts",
                "-y",  # /dev/null exists: without -y FFmpeg exits at once
                "/dev/null",
            ],
            stdin=subprocess.DEVNULL,
        )
        for port in ports
    ]
    time.sleep(1)
    senders = cameras([(port, "x") for port in ports], clip)
    try:
        time.sleep(3)  # past the handshakes and probing
        procs = [psutil.Process(r.pid) for r in receivers]
        assert all(r.poll() is None for r in receivers), "a baseline receiver exited"
        start = cpu_seconds(procs)
        time.sleep(seconds)
        used = cpu_seconds(procs) - start
        pss, rss = memory(procs)
        # A receiver that exits early would make the baseline look cheap.
        assert all(r.poll() is None for r in receivers), "a baseline receiver exited"
    finally:
        stop_all(senders)
        stop_all(receivers)
    return used / seconds * 100 / streams, pss / streams, rss / streams


def camstream(
    streams: int, seconds: float, clip: Path, turn: float
) -> tuple[float, float, float, int]:
    me = psutil.Process()
    before = memory([me])
    drain = Drain()
    listener = SrtListener("127.0.0.1", 0, drain, turn=turn)
    keys = [StreamKey("bench", f"cam{i}") for i in range(streams)]
    listener.publish({key: Publication(PASSPHRASE, 120) for key in keys})
    listener.start()
    senders = cameras([(listener.port, f"bench/cam{i}") for i in range(streams)], clip)
    try:
        time.sleep(3)
        connected = listener.stats()["connections"]
        start = cpu_seconds([me])
        time.sleep(seconds)
        used = cpu_seconds([me]) - start
        after = memory([me])
    finally:
        stop_all(senders)
        listener.close()
        drain.stop()
    pss, rss = after[0] - before[0], after[1] - before[1]
    return used / seconds * 100 / streams, pss / streams, rss / streams, connected


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--turn", type=float, default=0.0, help="the listener's rest (edge: 0.05)")
    args = parser.parse_args(argv)
    clip = make_clip(seconds=10.0, container="ts")
    base_cpu, base_pss, base_rss = baseline(args.streams, args.seconds, clip)
    ours_cpu, ours_pss, ours_rss, connected = camstream(args.streams, args.seconds, clip, args.turn)
    print(f"N = {args.streams} SRT publishers, 1 Mbit/s each, {args.seconds:g} s measured")
    print(f"{'receiver':<40} {'CPU %/stream':>13} {'PSS MB/str':>11} {'RSS MB/str':>11}")
    rows = (
        ("one ffmpeg listener per stream", base_cpu, base_pss, base_rss),
        (f"camstream SrtListener, turn {args.turn:g} s", ours_cpu, ours_pss, ours_rss),
    )
    for name, cpu, pss, rss in rows:
        print(f"{name:<40} {cpu:>13.2f} {pss / 1e6:>11.2f} {rss / 1e6:>11.2f}")
    ratio = ours_cpu / base_cpu if base_cpu > 0 else float("inf")
    print(f"ratio camstream / ffmpeg: CPU {ratio:.2f}")
    ok = connected == args.streams
    print(f"{'PASS' if ok else 'FAIL'}: {connected}/{args.streams} publishers connected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
