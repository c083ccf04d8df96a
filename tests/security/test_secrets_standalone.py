"""Attack 1 of issue 8, in standalone mode: a stream that sends a Secret to its author's host.

A stream author may reference a Secret and point the URL at a host of their
own over plain HTTP or RTSP, where a Basic challenge makes the worker send
the password readable. Reproduced against one worker process (`camstream
run`) with a recorder standing for the author's host (127.0.0.3), which
answers every request with a Basic challenge and keeps what it receives:

- credentials to http:// and to rtsp:// without `allowInsecureCredentials`;
- a Secret reference written as a path (`../../kube-system/secrets/x`).

Asserted: each is refused when the manifests are read, with the same message
as the CRD's (spec.py), the recorder never sees their credentials (nor any
connection for them), no value appears in the log or the API, and a healthy
stream runs. The control: a stream that does allow insecure credentials
gets its password to the recorder, so the recorder would have caught a leak.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from camstream import spec_rules as spec
from tests.harness.recorders import Recorder
from tests.media.worker_process import WorkerProcess, camera_stream, secret

pytestmark = [pytest.mark.security, pytest.mark.media]

BASIC_401 = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="cam"\r\n'
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)
RTSP_401 = b'RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm="cam"\r\n\r\n'
PASSWORDS = {"http-creds": "http-pa55-s3cret", "rtsp-creds": "rtsp-pa55-s3cret"}
CONTROL_PASSWORD = "control-pa55-s3cret"


def _stream(name: str, protocol: str, url: str, secret_name: str, **extra: Any) -> dict[str, Any]:
    source = {"protocol": protocol, "url": url, "credentialsSecretRef": {"name": secret_name}}
    return camera_stream(name, {**source, "stallTimeoutSeconds": 3, **extra})


@pytest.fixture(scope="module")
def exfil(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WorkerProcess, Recorder, Recorder]]:
    with (
        Recorder("127.0.0.3", reply=BASIC_401) as web,
        Recorder("127.0.0.3", reply=RTSP_401) as rtsp,
    ):
        http_url = f"http://127.0.0.3:{web.port}/cam.ts"
        rtsp_url = f"rtsp://127.0.0.3:{rtsp.port}/cam"
        small = {"width": 160, "height": 90, "fps": 10, "bitrateKbps": 100, "audio": False}
        manifests = [
            _stream("plain-http", "http", http_url, "http-creds"),
            _stream("plain-rtsp", "rtsp", rtsp_url, "rtsp-creds"),
            _stream("traversal", "http", "https://cam.example/x", "../../kube-system/secrets/x"),
            _stream("control", "http", http_url, "control-creds", allowInsecureCredentials=True),
            camera_stream("pattern", {"protocol": "synthetic", "synthetic": small}),
            *(secret(name, username="viewer", password=pw) for name, pw in PASSWORDS.items()),
            secret("control-creds", username="viewer", password=CONTROL_PASSWORD),
        ]
        root = tmp_path_factory.mktemp("exfil")
        worker = WorkerProcess(manifests, root / "worker", processes=1).start()
        try:
            yield worker, web, rtsp
        finally:
            worker.stop()


def _basic_credentials(received: bytes) -> set[str]:
    """Every user:password a recorder got in an Authorization: Basic header."""
    tokens = re.findall(rb"(?im)^authorization:\s*basic\s+([A-Za-z0-9+/=]+)", received)
    return {base64.b64decode(t).decode(errors="replace") for t in tokens}


def test_credentials_never_travel_without_tls_unless_the_stream_says_so(
    exfil: tuple[WorkerProcess, Recorder, Recorder],
) -> None:
    worker, web, rtsp = exfil
    worker.wait_for("pattern", phase="Live", timeout=30)
    # The control reaches the recorder with its password: it would catch a leak.
    deadline = time.monotonic() + 20
    while f"viewer:{CONTROL_PASSWORD}" not in _basic_credentials(web.received()):
        assert time.monotonic() < deadline, f"the control never sent its credentials: {web.heads}"
        time.sleep(0.25)
    control = worker.stream("control")
    assert (control["reason"], control["phase"]) == ("AuthenticationFailed", "Failed")

    streams = worker.streams()
    assert {"plain-http", "plain-rtsp", "traversal"}.isdisjoint(streams)
    log = worker.log()
    refused = re.escape(f"spec.source: {spec.INSECURE_CREDENTIALS_MESSAGE}")
    assert len(re.findall(rf"skipped: .* document \d+: {refused}", log)) == 2, log
    assert f"spec.source.credentialsSecretRef.name: {spec.SECRET_NAME_MESSAGE}" in log
    # Nothing of the refused streams reached the author's host.
    assert _basic_credentials(web.received()) == {f"viewer:{CONTROL_PASSWORD}"}
    assert rtsp.connections == 0
    # No value anywhere a person reads.
    api = worker.get("/api/streams").decode() + worker.get("/metrics").decode()
    for value in [*PASSWORDS.values(), CONTROL_PASSWORD]:
        assert value not in log and value not in api
