"""Running a worker out of file descriptors (issue 8, item 3, last point).

Idle RTMP and idle HTTP connections share one descriptor table. The sharded
RTMP front's accept loop used to die for good on EMFILE while /readyz kept
saying ready. Each worker here runs with RLIMIT_NOFILE lowered to 256 (soft
and hard, so raising it to the hard limit at start changes nothing), which
makes the attack take a few hundred connections instead of a million.

- One engine process: idle RTMP connections alone cannot exhaust it, because
  the RTMP cap is sized from the limit ((256 - 128) / 2 = 64): the rest are
  refused as ``capacity`` and the healthy stream keeps writing segments.
- Two engine processes: idle HTTP connections do exhaust the parent (the
  front's process); the front backs off, /readyz says not ready, and both
  recover once the connections go. The healthy stream, in an engine process
  with a table of its own, never notices.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness.rtmp_client import RtmpClient
from tests.media.worker_process import WorkerProcess
from tests.security.conftest import (
    HEALTHY,
    HEALTHY_KEY,
    MAX_SEGMENT_GAP,
    Watch,
    assert_no_secrets,
    healthy_camera,
    rejected_since,
)

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]

NOFILE = 256
RTMP_CAP = (NOFILE - 128) // 2  # limits.connection_cap


def idle_rtmp(port: int, count: int, addresses: int) -> list[RtmpClient]:
    """`count` connections that say nothing, spread over 127.0.3.1.. (per-address caps)."""
    clients = []
    for n in range(count):
        with contextlib.suppress(OSError):
            clients.append(RtmpClient(port, source=f"127.0.3.{n % addresses + 1}"))
    return clients


def idle_tcp(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return sockets


def until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def keep_alive(worker: WorkerProcess) -> Iterator[Callable[[str], tuple[int, bytes]]]:
    """GET over one HTTP connection opened now (a full table accepts no new one)."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.http_port, timeout=5)

    def get(path: str) -> tuple[int, bytes]:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()

    try:
        yield get
    finally:
        connection.close()


def test_idle_rtmp_connections_are_capped_below_the_descriptor_limit(start_worker) -> None:
    worker = start_worker(HEALTHY, processes=1, nofile=NOFILE)
    with healthy_camera(worker):
        before = rejected_since(worker, {})
        with Watch(worker) as watch:
            clients = idle_rtmp(worker.rtmp_port, 240, addresses=8)
            time.sleep(1.5)
            still_open = [c for c in clients if not c.closed_within(0)]
            time.sleep(3)  # the healthy stream writes on meanwhile
            ready = worker.get("/readyz")
            for client in clients:
                client.close()
        print(f"\n240 idle RTMP connections at {NOFILE} descriptors: {watch.figures()}")
        watch.assert_undisturbed(rss_growth_mb=32)
        counts = rejected_since(worker, before)
        # The healthy camera holds one of the 64 places.
        assert len(still_open) == RTMP_CAP - 1, (len(still_open), counts)
        assert counts.get("capacity") == len(clients) - len(still_open), counts
        assert ready == b"ready\n"
        assert "cannot accept" not in worker.log()
        # Once the idle ones are gone, a publisher gets in again.
        with RtmpClient(worker.rtmp_port, source="127.0.3.9") as client:
            client.handshake()
        assert_no_secrets(worker, HEALTHY_KEY)


@pytest.mark.parametrize("processes", [2, 1])
def test_out_of_descriptors_the_accept_loop_backs_off_and_is_not_ready(
    start_worker, processes: int
) -> None:
    """With two engine processes the sharded front backs off; with one, the listener.

    Only with two does the healthy stream go on untouched: with one, the
    idle HTTP connections take the descriptors its segment files need too
    (the HTTP server's own limits are threat-model.md's), so its segments are
    dropped meanwhile; its camera must stay connected all the same.
    """
    worker = start_worker(HEALTHY, processes=processes, nofile=NOFILE)
    with healthy_camera(worker), keep_alive(worker) as get:
        assert get("/readyz")[0] == 200
        with Watch(worker, health=False) as watch:
            idle = idle_tcp(worker.http_port, 2 * NOFILE)  # past what the parent can accept
            try:
                time.sleep(1)
                # A publisher arriving now waits in the backlog, and the front's
                # accept() fails with EMFILE: it backs off and says so.
                late = RtmpClient(worker.rtmp_port, source="127.0.4.1")
                late.raw(b"\x03" + bytes(1536))
                until(lambda: get("/readyz")[0] == 503, within=5, what="/readyz: not ready")
                # (/metrics itself fails now: the process collector opens /proc files.)
                time.sleep(2)  # out of descriptors a while: the healthy stream goes on
            finally:
                for sock in idle:
                    sock.close()
            until(lambda: get("/readyz")[0] == 200, within=10, what="/readyz: ready again")
            # The publisher that waited in the backlog is served now.
            late.sock.settimeout(10)
            reply = late.sock.recv(1 + 2 * 1536, socket.MSG_WAITALL)
            late.close()
            _, metrics = get("/metrics")
        after = worker.wait_segments("healthy", 2, timeout=20)  # its camera still connected
    print(f"\n{processes} engine process(es), out of descriptors: {watch.figures()}")
    assert worker.alive
    assert after["phase"] == "Live" and after["reconnects"] == 0, after
    if processes > 1:
        assert watch.max_gap < MAX_SEGMENT_GAP, watch.figures()

    assert len(reply) == 1 + 2 * 1536 and reply[0] == 3
    assert b"camstream_rtmp_accepting 1.0" in metrics
    assert_no_secrets(worker, HEALTHY_KEY)
    log = worker.log()
    name = "rtmp front" if processes > 1 else "rtmp"
    assert f"{name}: cannot accept connections" in log
    assert f"{name}: accepting connections again" in log
