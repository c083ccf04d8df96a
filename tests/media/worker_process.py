"""A standalone camstream worker as a real process, for the media tests.

Runs exactly what a user runs (`camstream run -f manifests.yaml`) on loopback
ports, and gives tests what they watch: the JSON API, the HLS folder and the
worker's log (checked for leaked secrets).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.cameras import free_port
from tests.harness.hlscheck import MediaPlaylist, parse_media_playlist


class WorkerProcess:
    def __init__(
        self,
        manifests: list[dict[str, Any]],
        workdir: Path,
        processes: int = 2,
        extra_args: tuple[str, ...] = (),
        *,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> None:
        """`env`: added to the environment; `nofile`: RLIMIT_NOFILE (soft and hard) to run with."""
        self.processes = processes
        self.extra_args = extra_args
        self.env = env or {}
        self.nofile = nofile
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.hls_dir = workdir / "hls"
        self.http_port = free_port()
        self.rtmp_port = free_port()
        self.manifest_path = workdir / "streams.yaml"
        self.manifest_path.write_text(yaml.safe_dump_all(manifests))
        self.log_path = workdir / "worker.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rtmp_url(self, name: str, key: str, namespace: str = "default") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{namespace}/{name}/{key}"

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "faulthandler",
                "-m",
                "camstream_cli",
                "run",
                "-f",
                str(self.manifest_path),
                "--hls-dir",
                str(self.hls_dir),
                "--http-port",
                str(self.http_port),
                "--rtmp-port",
                str(self.rtmp_port),
                "--processes",
                str(self.processes),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            preexec_fn=self._limit_descriptors if self.nofile else None,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"worker exited {self._proc.returncode}:\n{self.log()}")
            try:
                self.get("/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.log()}")

    def _limit_descriptors(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def stop(self) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base_url + path, timeout=5) as response:
            return response.read()

    def streams(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in json.loads(self.get("/api/streams"))}

    def stream(self, name: str) -> dict[str, Any]:
        return self.streams()[name]

    def wait_for(self, name: str, timeout: float = 30.0, **expected: Any) -> dict[str, Any]:
        """Poll the API until the stream's fields equal `expected` (e.g. phase="Live")."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.alive, f"worker died:\n{self.log()[-3000:]}"
            last = self.stream(name)
            if all(last.get(k) == v for k, v in expected.items()):
                return last
            time.sleep(0.25)
        raise AssertionError(f"{name}: wanted {expected}, last seen {last}\n{self.log()[-3000:]}")

    def playlist(self, name: str, namespace: str = "default") -> MediaPlaylist:
        return parse_media_playlist((self.hls_dir / namespace / name / "index.m3u8").read_text())

    def segment_path(self, name: str, uri: str, namespace: str = "default") -> Path:
        return self.hls_dir / namespace / name / uri

    def wait_segments(self, name: str, count: int, timeout: float = 40.0) -> dict[str, Any]:
        """Wait until `count` more segments than now have been written."""
        start = self.stream(name)["segments"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.stream(name)
            if current["segments"] >= start + count:
                return current
            time.sleep(0.25)
        raise AssertionError(f"{name}: fewer than {count} new segments in {timeout}s: {current}")


def camera_stream(name: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"source": source, **spec},
    }


def secret(name: str, **values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": values,
    }
