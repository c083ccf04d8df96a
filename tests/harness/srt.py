"""SRT test parts: Debian's FFmpeg as an SRT camera (caller or listener) and a lossy UDP relay.

Who calls this: tests/srt, and tests/cluster/test_operator.py (a worker pod's
SRT port). The camera loops a pre-encoded MPEG-TS clip (make_clip) with
`-c copy`, so it costs little CPU. Its passphrase is kept out of the
harness's messages (redacted like an RTMP key).

`LossyRelay` sits between a camera and the worker's SRT port on loopback and
drops a fraction of the datagrams in both directions (seeded, so a run is
repeatable): what a lossy network does to SRT, which must recover it within
its latency.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from urllib.parse import quote

from tests.harness.cameras import LOOPBACK, HarnessError, _Process, _require_loopback, make_clip


def udp_free_port(host: str = LOOPBACK) -> int:
    """A port free on `host` for UDP and for TCP too: a worker with an edge token opens
    its edge leg port (TCP) on its SRT port's number, and a UDP-free port in the
    ephemeral range may be some loopback connection's TCP port (a CI run's worker
    failed to start on exactly that)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise OSError(f"no port free for both UDP and TCP on {host}")


class SrtCamera(_Process):
    """FFmpeg sending MPEG-TS over SRT: a caller to `port` (push), or a listener on it (pull)."""

    name = "srt"

    def __init__(
        self,
        port: int,
        *,
        stream_id: str | None = None,
        passphrase: str | None = None,
        listener: bool = False,
        latency_ms: int = 200,
        startup_check: float = 0.5,
        host: str = LOOPBACK,
    ) -> None:
        """`host`: the worker's address (a pod's loopback address in tests/cluster)."""
        super().__init__()
        _require_loopback(host)
        self.host = host
        self.port = port
        self.stream_id = stream_id
        self.passphrase = passphrase
        self.listener = listener
        self.latency_ms = latency_ms
        self.startup_check = startup_check
        if passphrase:
            self._secrets.append(passphrase)
        self.clip = make_clip(seconds=10.0, gop_seconds=1.0, container="ts")

    @property
    def url(self) -> str:
        query = [f"latency={self.latency_ms * 1000}", "pkt_size=1316"]
        if self.listener:
            query.append("mode=listener")
        if self.stream_id is not None:
            query.append("streamid=" + quote(self.stream_id, safe="#!:=,/"))
        if self.passphrase is not None:
            query.append(f"passphrase={self.passphrase}")
        return f"srt://{self.host}:{self.port}?" + "&".join(query)

    def _argv(self) -> list[str]:
        return [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-re", "-stream_loop", "-1", "-i", str(self.clip),
            "-c", "copy", "-f", "mpegts", self.url,
        ]  # fmt: skip

    def _wait_ready(self) -> None:
        if self.listener:
            return  # it waits for the worker to call
        deadline = time.monotonic() + self.startup_check
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError(f"srt camera exited: {self.log_tail()}")
            time.sleep(0.05)

    def run_once(self, timeout: float = 15.0) -> str:
        """Run until FFmpeg exits (a refused caller exits); its log tail."""
        self.start_unchecked()
        assert self._proc is not None
        self._proc.wait(timeout)
        return self.log_tail()

    def start_unchecked(self) -> None:
        saved, self.startup_check = self.startup_check, 0.0
        try:
            self.start()
        finally:
            self.startup_check = saved


class LossyRelay:
    """UDP from a camera (sending to `port`) to `target` and back, dropping `loss` of it."""

    def __init__(self, target_port: int, loss: float, *, seed: int = 15) -> None:
        self.target = (LOOPBACK, target_port)
        self.loss = loss
        self._random = random.Random(seed)
        self._outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._outer.bind((LOOPBACK, 0))
        self.port = int(self._outer.getsockname()[1])
        self._inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._inner.bind((LOOPBACK, 0))
        self._camera: tuple[str, int] | None = None
        self.forwarded = self.dropped = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._up, daemon=True),
            threading.Thread(target=self._down, daemon=True),
        ]

    def __enter__(self) -> LossyRelay:
        for sock in (self._outer, self._inner):
            sock.settimeout(0.2)
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._outer.close()
        self._inner.close()

    def _keep(self) -> bool:
        if self._random.random() < self.loss:
            self.dropped += 1
            return False
        self.forwarded += 1
        return True

    def _up(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self._outer.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._camera = source
            if self._keep():
                self._inner.sendto(data, self.target)

    def _down(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._inner.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if self._camera is not None and self._keep():
                self._outer.sendto(data, self._camera)
