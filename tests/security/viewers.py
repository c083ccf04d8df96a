"""Parts of the playback and HTTP attack tests (test_playback_*.py, test_http_*.py).

- `synthetic_stream` / `key_secret`: manifests for a real standalone worker
  (`camstream run`, tests/media/worker_process.py) with small, cheap test
  patterns (320x180, 10 fps) and the Secrets that hold signing keys;
- `HealthyViewer`: a viewer in a thread that keeps playing one stream over
  HTTP the way a player does (playlist, then every new segment, over one
  keep-alive connection) and records every failure, so a test can say that
  an attack did not disturb it;
- `raw_request` / `closed_within`: sockets spoken to byte by byte, for what
  no HTTP client library will send.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from tests.harness.hlscheck import parse_media_playlist


def synthetic_stream(
    name: str,
    namespace: str = "default",
    *,
    auth: dict[str, Any] | None = None,
    audio: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    pattern = {"width": 320, "height": 180, "fps": 10, "bitrateKbps": 150, "audio": audio}
    body: dict[str, Any] = {"source": {"protocol": "synthetic", "synthetic": pattern}, **spec}
    if auth is not None:
        body["playback"] = {"auth": auth}
    return {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def key_secret(
    key: str,
    namespace: str = "default",
    name: str = "camstream-playback",
    field_: str = "signingKey",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {field_: key},
    }


@dataclass
class HealthyViewer:
    """Plays `path` (a media playlist) on host:port until stopped."""

    host: str
    port: int
    path: str
    interval: float = 0.5
    failures: list[str] = field(default_factory=list)
    segments: int = 0
    requests: int = 0
    sequences: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HealthyViewer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="healthy-viewer")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mark(self) -> tuple[int, int]:
        """(segments fetched, failures) so far, to compare after an attack."""
        return self.segments, len(self.failures)

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        fetched: set[str] = set()
        while not self._stop.is_set():
            try:
                text = self._get(connection, self.path).decode()
                playlist = parse_media_playlist(text)
                self.sequences.append(playlist.media_sequence)
                for segment in playlist.segments[-2:]:
                    if segment.uri in fetched:
                        continue
                    data = self._get(connection, urljoin(self.path, segment.uri))
                    if not data:
                        raise AssertionError(f"empty segment {segment.uri}")
                    fetched.add(segment.uri)
                    self.segments += 1
            except Exception as exc:  # every kind of failure is what we count
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
            self._stop.wait(self.interval)
        connection.close()

    def _get(self, connection: http.client.HTTPConnection, path: str) -> bytes:
        self.requests += 1
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise AssertionError(f"GET {path}: {response.status}")
        return body


def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` as it is and read the answer until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def closed_within(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed `sock` (EOF or reset), or None if it
    was still open after `limit`."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None
