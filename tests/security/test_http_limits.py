"""Issue 8, item 6 (the HTTP side): idle and slow connections were never closed,
/api/streams and /metrics were open to anyone, CORS was `*` for everything.

One real standalone worker runs with the limits set small enough to reach
in a test (the numbers are flags; their defaults are in
servers/http/settings.py and checked in tests/unit/test_playback_access.py):

    --http-idle-timeout 2        a complete request within 2 s, or closed
    --http-max-connections 24    the 25th connection is answered 503
    --http-max-header-bytes 4096 a longer header line is a 400
    --admin-port P --admin-token-file F   index, /api/streams, /metrics there, with a token
    --cors-origin '*' --cors-origin http://app.test:8000

A healthy viewer plays the public stream over HTTP the whole time (one
keep-alive connection, a playlist every 0.5 s, every new segment) and must
never see a failure: slowloris clients, idle sockets and a full connection
table do not disturb it. A second, small worker runs with 128 file
descriptors to show that running out of them pauses the HTTP accept loop
rather than ending it.
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from camstream import playback_tokens as tokens
from tests.harness.cameras import LOOPBACK, free_port
from tests.media.worker_process import WorkerProcess
from tests.security.viewers import (
    HealthyViewer,
    closed_within,
    key_secret,
    raw_request,
    synthetic_stream,
)

pytestmark = [pytest.mark.security, pytest.mark.media, pytest.mark.timeout(120)]

IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 24
MAX_HEADER = 4096
ADMIN_TOKEN = "admin-token-3b7f0c1d9e2a4f68"
APP_ORIGIN = "http://app.test:8000"
KEY = "playback-key-for-the-http-limits-suite"
# Closed within the timeout plus this: aiohttp checks its keep-alive timer
# on the loop, and the test machine is shared.
MARGIN = 1.5


@dataclass
class Limits:
    worker: WorkerProcess
    admin_port: int
    viewer: HealthyViewer

    def url(self, path: str, *, admin: bool = False) -> str:
        port = self.admin_port if admin else self.worker.http_port
        return f"http://{LOOPBACK}:{port}{path}"


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limits]:
    workdir = tmp_path_factory.mktemp("http-limits")
    token_file = workdir / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    admin_port = free_port()
    args = (
        "--http-idle-timeout", str(IDLE_TIMEOUT),
        "--http-max-connections", str(MAX_CONNECTIONS),
        "--http-max-header-bytes", str(MAX_HEADER),
        "--admin-port", str(admin_port),
        "--admin-token-file", str(token_file),
        "--cors-origin", "*",
        "--cors-origin", APP_ORIGIN,
    )  # fmt: skip
    manifests = [
        key_secret(KEY),
        synthetic_stream("open"),
        synthetic_stream("locked", auth={"mode": "signed"}),
    ]
    worker = WorkerProcess(manifests, workdir, 1, args)
    viewer = None
    try:
        worker.start()
        _wait_for_segments(worker.hls_dir / "default" / "open" / "index.m3u8", 2)
        viewer = HealthyViewer(LOOPBACK, worker.http_port, "/streams/default/open/index.m3u8")
        viewer.start()
        yield Limits(worker, admin_port, viewer)
        assert viewer.failures == [], viewer.failures
    finally:
        if viewer is not None:
            viewer.stop()
        worker.stop()


def _wait_for_segments(playlist: Path, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= count):
        assert time.monotonic() < deadline, f"no {count} segments in {playlist} in {timeout} s"
        time.sleep(0.2)


def _still_playing(limits: Limits, before: tuple[int, int]) -> None:
    """The healthy viewer fetched new segments since `before` and failed nowhere."""
    deadline = time.monotonic() + 10
    while limits.viewer.segments <= before[0] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert limits.viewer.segments > before[0], "the healthy viewer got no new segment"
    assert limits.viewer.failures == [], limits.viewer.failures


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_slow_headers_are_cut_within_the_idle_timeout(limits: Limits) -> None:
    before = limits.viewer.mark()
    sockets = []
    for _ in range(8):
        sock = socket.create_connection((LOOPBACK, limits.worker.http_port))
        sock.sendall(b"GET /streams/default/open/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    started = time.monotonic()
    closed: dict[int, float] = {}
    # One byte of header every 0.2 s on each: the request never completes.
    while len(closed) < len(sockets) and time.monotonic() - started < IDLE_TIMEOUT + 5:
        for number, sock in enumerate(sockets):
            if number in closed:
                continue
            try:
                sock.sendall(b"a")
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and sock.recv(4096) == b"":
                    closed[number] = time.monotonic() - started
            except OSError:
                closed[number] = time.monotonic() - started
        time.sleep(0.2)
    for sock in sockets:
        sock.close()
    assert len(closed) == len(sockets), f"still open after {IDLE_TIMEOUT + 5} s: {closed}"
    assert max(closed.values()) < IDLE_TIMEOUT + MARGIN, closed
    _still_playing(limits, before)


def test_idle_connections_are_closed_within_the_idle_timeout(limits: Limits) -> None:
    before = limits.viewer.mark()
    # Opened and silent.
    silent = [socket.create_connection((LOOPBACK, limits.worker.http_port)) for _ in range(10)]
    # Kept alive after one complete request.
    kept = socket.create_connection((LOOPBACK, limits.worker.http_port))
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")
    for sock in [*silent, kept]:
        seconds = closed_within(sock, IDLE_TIMEOUT + 5)
        assert seconds is not None and seconds < IDLE_TIMEOUT + MARGIN, seconds
        sock.close()
    _still_playing(limits, before)


def test_oversized_header_lines_are_a_400(limits: Limits) -> None:
    def request(header_bytes: int) -> bytes:
        return raw_request(
            LOOPBACK,
            limits.worker.http_port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"X-Big: " + b"a" * header_bytes + b"\r\n\r\n",
        )  # fmt: skip

    assert request(MAX_HEADER - 100).startswith(b"HTTP/1.1 200")
    answer = request(MAX_HEADER + 100)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert f"more than {MAX_HEADER} bytes".encode() in answer


def test_the_connection_cap_refuses_with_503_and_recovers(limits: Limits) -> None:
    before = limits.viewer.mark()
    # Opened all at once (well within the idle timeout), then read: a served
    # connection says nothing first, a refused one gets its 503 at once.
    sockets = [
        socket.create_connection((LOOPBACK, limits.worker.http_port))
        for _ in range(MAX_CONNECTIONS + 3)
    ]
    time.sleep(0.5)
    held, refusals = [], []
    try:
        for sock in sockets:
            readable, _, _ = select.select([sock], [], [], 0)
            (refusals if readable else held).append(sock.recv(4096) if readable else sock)
        assert refusals, "nothing was refused"
        for refusal in refusals:
            assert refusal.startswith(b"HTTP/1.1 503"), refusal[:200]
            body = json.loads(refusal.split(b"\r\n\r\n", 1)[1])
            assert body["reason"] == "connection_limit" and "too many connections" in body["error"]
        # The healthy viewer's keep-alive connection counts too.
        assert MAX_CONNECTIONS - 3 <= len(held) < MAX_CONNECTIONS, len(held)
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.5)
    assert get(limits.url("/healthz"))[0] == 200  # room again
    _still_playing(limits, before)
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, _, metrics = get(limits.url("/metrics", admin=True), bearer)
    assert status == 200
    refused = [
        line for line in metrics.decode().splitlines()
        if line.startswith("camstream_http_connections_refused_total ")
    ]  # fmt: skip
    assert refused and float(refused[0].split()[1]) >= 1


def test_cors_as_configured(limits: Limits) -> None:
    token = tokens.sign(KEY.encode(), tokens.Grant("default", "locked", int(time.time()) + 60))
    locked = limits.url(f"/streams/default/locked/index.m3u8?token={token}")
    open_ = limits.url("/streams/default/open/index.m3u8")
    evil = "http://evil.test"
    # A public stream: any origin, as before.
    _, headers, _ = get(open_, {"Origin": evil})
    assert headers["Access-Control-Allow-Origin"] == "*"
    # A protected one: the listed origin only, never '*'.
    status, headers, _ = get(locked, {"Origin": APP_ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert headers["Vary"] == "Origin"
    status, headers, _ = get(locked, {"Origin": evil})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    # Its refusals are readable by the listed origin (so the app can say why).
    status, headers, _ = get(
        limits.url("/streams/default/locked/index.m3u8"), {"Origin": APP_ORIGIN}
    )
    assert status == 401 and headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    # A preflight for a player that sends the token in a header.
    request = urllib.request.Request(
        limits.url("/streams/default/locked/index.m3u8"),
        method="OPTIONS",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Headers": "authorization"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_metrics_and_the_api_are_on_the_admin_port_behind_a_token(limits: Limits) -> None:
    for path in ("/metrics", "/api/streams", "/"):
        assert get(limits.url(path))[0] == 404, path  # not on the public port at all
        status, headers, body = get(limits.url(path, admin=True))
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert json.loads(body)["reason"] == "admin_token"
        assert b"camstream_" not in body and b"default/open" not in body
        wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        assert get(limits.url(path, admin=True), wrong)[0] == 401, path
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, _, metrics = get(limits.url("/metrics", admin=True), bearer)
    assert status == 200 and b"camstream_http_connections " in metrics
    assert b'camstream_playback_refused_total{reason="admin_token"}' in metrics
    status, _, api = get(limits.url("/api/streams", admin=True), bearer)
    assert status == 200 and {s["name"] for s in json.loads(api)} == {"open", "locked"}
    status, _, index = get(limits.url("/", admin=True), bearer)
    page = index.decode()
    assert status == 200 and "default/locked" in page
    # Players on the index page only for streams that need no token.
    assert 'data-src="streams/default/open/index.m3u8"' in page
    assert 'data-src="streams/default/locked/' not in page
    # The stream's own status stays with the stream (its viewers may read it).
    assert get(limits.url("/api/streams/default/open"))[0] == 200
    assert get(limits.url("/api/streams/default/locked"))[0] == 401
    assert ADMIN_TOKEN not in limits.worker.log()


def test_running_out_of_file_descriptors_pauses_accepting_and_recovers(
    tmp_path: Path,
) -> None:
    """A worker whose descriptors run out (idle clients, here 300 against a
    limit of 128) keeps its accept loop: it backs off, and serves again as
    soon as descriptors are free. Before, an EMFILE ended the loop for good."""
    import resource
    import subprocess
    import sys

    import yaml

    manifests = [
        key_secret("k" * 32, name="door-key", field_="streamKey"),
        {
            "kind": "CameraStream",
            "metadata": {"name": "door", "namespace": "default"},
            "spec": {"source": {"protocol": "rtmp", "streamKeySecretRef": {"name": "door-key"}}},
        },  # waits for a publisher: no encoding cost
    ]
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump_all(manifests))
    port = free_port()
    command = [
        sys.executable, "-m", "camstream_cli", "run", "-f", str(tmp_path / "streams.yaml"),
        "--hls-dir", str(tmp_path / "hls"), "--http-port", str(port),
        "--rtmp-port", str(free_port()), "--processes", "1", "--http-idle-timeout", "30",
    ]  # fmt: skip

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=limit
    )
    sockets: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while get_or_none(f"http://{LOOPBACK}:{port}/healthz") != 200:
            assert process.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)
        for _ in range(300):  # the kernel completes them; the worker cannot accept them all
            sockets.append(socket.create_connection((LOOPBACK, port), timeout=5))
        time.sleep(1.0)
        assert get_or_none(f"http://{LOOPBACK}:{port}/healthz", timeout=1.0) is None
        for sock in sockets:
            sock.close()
        sockets.clear()
        deadline = time.monotonic() + 15
        while get_or_none(f"http://{LOOPBACK}:{port}/healthz", timeout=1.0) != 200:
            assert process.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "the port did not come back"
            time.sleep(0.3)
        metrics = urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5).read()
        errors = [
            line for line in metrics.decode().splitlines()
            if line.startswith("camstream_http_accept_errors_total ")
        ]  # fmt: skip
        assert errors and float(errors[0].split()[1]) >= 1
        text = (tmp_path / "worker.log").read_text()
        # Summarised: one line for the whole burst, not one per failed accept.
        assert 1 <= text.count("accepting HTTP connections failed (EMFILE)") <= 2, text[-2000:]
    finally:
        for sock in sockets:
            sock.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def get_or_none(url: str, timeout: float = 5.0) -> int | None:
    """The status of GET url, or None when no answer came."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None
