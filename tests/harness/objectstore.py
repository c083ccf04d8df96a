"""A real S3-compatible object store for the tests: SeaweedFS on loopback.

`weed server` runs master, volume server, filer and S3 gateway in one
process (a real distributed store, in its smallest shape), with its data in
a folder of the caller's and every port on 127.0.0.1 picked free at start.
The binary is built from its Go module by scripts/install-seaweedfs.sh and
cached (bootstrap does this; the fixture builds it if it is missing).

    with SeaweedS3(tmp_path) as s3:
        s3.env()            # CAMSTREAM_RECORDING_* and AWS_* for a worker
        s3.stop(); s3.start()   # an outage, and the store back with its data

Used by tests/media/test_recording*.py, tests/unit's store tests and the
recording benchmark.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness.cameras import LOOPBACK, REPO_ROOT, HarnessError, free_port

CACHE = Path(os.environ.get("CAMSTREAM_CACHE", Path.home() / ".cache" / "camstream"))
BUCKET = "camstream-recordings"


def weed_binary() -> Path:
    binary = CACHE / "bin" / "weed"
    if not binary.exists():
        subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "install-seaweedfs.sh")],
            check=True,
            timeout=3600,
            stdout=subprocess.DEVNULL,
        )
    if not binary.exists():
        raise HarnessError(f"weed not found at {binary}")
    return binary


class SeaweedS3:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.access_key = "camstream-test"
        self.secret_key = secrets.token_hex(16)
        self.s3_port = free_port()
        self._ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "debug.port",
                "iam.port",
            )
        }
        self.config_path = work_dir / "s3.json"
        self.config_path.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "camstream",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        self.log_path = work_dir / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    def env(self, bucket: str = BUCKET) -> dict[str, str]:
        """What a worker (or the operator) needs to use this store."""
        return {
            "CAMSTREAM_RECORDING_STORE": "s3",
            "CAMSTREAM_RECORDING_S3_ENDPOINT": self.endpoint,
            "CAMSTREAM_RECORDING_S3_BUCKET": bucket,
            "CAMSTREAM_RECORDING_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def start(self, timeout: float = 60.0) -> Self:
        argv = [
            str(weed_binary()),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-filer",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={self.config_path}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=20",
            "-master.telemetry=false",
            *(f"-{name}={port}" for name, port in self._ports.items()),
        ]
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.work_dir, start_new_session=True,
        )  # fmt: skip
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until an S3 request with our credentials can list buckets (all four parts up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise HarnessError(f"weed exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/status", timeout=2) as r:
                    if r.status == 200 and self._volumes_up():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise HarnessError(f"weed not ready after {timeout}s: {self.log_path.read_text()[-2000:]}")

    def _volumes_up(self) -> bool:
        url = f"http://{LOOPBACK}:{self._ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return b"DataNodes" in r.read() and self._filer_up()
        except (urllib.error.URLError, OSError):
            return False

    def _filer_up(self) -> bool:
        url = f"http://{LOOPBACK}:{self._ports['filer.port']}/"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the store (an outage): SIGKILL, as a crash or a cut would look."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
