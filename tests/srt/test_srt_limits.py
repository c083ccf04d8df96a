"""The SRT listener's limits, each with its number: real libsrt on both ends, in this process.

The listener (servers/srt/listener.py) runs as the worker runs it; the
publishers are libsrt callers made with the same binding, so each test can
push a peer past exactly one cap and read the refusal: what the caller is
told (SRT's reject reason), the listener's counter, and the note the stream
would show. Loopback only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from camstream.spec import StreamKey
from camstream_worker.protocols.srt import vouch
from camstream_worker.servers.srt.limits import MAX_BITRATE, SrtLimits, buffer_packets
from camstream_worker.servers.srt.listener import Publication, SrtListener
from camstream_worker.srt import libsrt

pytestmark = pytest.mark.media

DOOR = StreamKey("site", "door")
GATE = StreamKey("site", "gate")
DOOR_PASS = "door-passphrase-1"
GATE_PASS = "gate-passphrase-2"
MESSAGE = bytes(range(188)) * 7  # 1316 bytes: one live-mode message


class Recorder:
    """The listener's Handler: keeps what it was given."""

    def __init__(self) -> None:
        self.delivered: list[tuple[StreamKey, socket.socket]] = []
        self.notes: list[tuple[StreamKey, str, str]] = []
        self.lock = threading.Lock()

    def deliver(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        with self.lock:
            self.delivered.append((key, sock))

    def refused(self, key: StreamKey, reason: str, message: str, peer: str) -> None:
        with self.lock:
            self.notes.append((key, reason, message))


@pytest.fixture
def serve() -> Iterator[object]:
    started: list[SrtListener] = []

    def start(turn: float = 0.0, **limits: object) -> tuple[SrtListener, Recorder]:
        recorder = Recorder()
        listener = SrtListener(
            "127.0.0.1",
            0,
            recorder,
            limits=SrtLimits(**limits),
            turn=turn,  # type: ignore[arg-type]
        )
        listener.publish({DOOR: Publication(DOOR_PASS, 120), GATE: Publication(GATE_PASS, 120)})
        listener.start()
        started.append(listener)
        return listener, recorder

    yield start
    for listener in started:
        listener.close()


def call(port: int, stream_id: str, passphrase: str | None) -> int:
    sock = libsrt.create()
    libsrt.set_int(sock, libsrt.SRTO_CONNTIMEO, 2000)
    libsrt.set_string(sock, libsrt.SRTO_STREAMID, stream_id)
    if passphrase is not None:
        libsrt.set_string(sock, libsrt.SRTO_PASSPHRASE, passphrase)
    try:
        libsrt.connect(sock, "127.0.0.1", port)
    except libsrt.SrtError:
        libsrt.close(sock)
        raise
    return sock


def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_a_publisher_gets_its_own_stream_with_its_own_passphrase(serve) -> None:
    listener, recorder = serve()
    door = call(listener.port, "site/door", DOOR_PASS)
    for _ in range(20):
        libsrt.send(door, MESSAGE)
    eventually(lambda: len(recorder.delivered) == 1)
    key, sock = recorder.delivered[0]
    assert key == DOOR
    sock.settimeout(5)
    received = b""
    while len(received) < 20 * len(MESSAGE):
        received += sock.recv(65536)
    assert received == MESSAGE * 20  # the bytes as sent, in order
    # The other stream's passphrase does not open this one.
    with pytest.raises(libsrt.SrtError):
        call(listener.port, "site/door", GATE_PASS)
    eventually(lambda: listener.stats()["refused_unauthorized"] == 1)
    eventually(lambda: recorder.notes and recorder.notes[0][:2] == (DOOR, "WrongPassphrase"))
    assert GATE_PASS not in recorder.notes[0][2] and DOOR_PASS not in recorder.notes[0][2]
    libsrt.close(door)


def test_an_unknown_stream_looks_like_a_wrong_passphrase(serve) -> None:
    listener, recorder = serve()
    with pytest.raises(libsrt.SrtError) as unknown:
        call(listener.port, "site/nosuch", DOOR_PASS)
    with pytest.raises(libsrt.SrtError) as wrong:
        call(listener.port, "site/door", GATE_PASS)
    assert str(unknown.value) == str(wrong.value)  # a stranger learns nothing from it
    eventually(lambda: listener.stats()["refused_stream_id"] == 1)
    eventually(lambda: listener.stats()["refused_unauthorized"] == 1)
    with pytest.raises(libsrt.SrtError, match="1400"):  # a malformed ID may be told so
        call(listener.port, "#!::r=site/door,m=request", DOOR_PASS)
    assert listener.stats()["refused_stream_id"] == 2
    assert [key for key, _, _ in recorder.notes] == [DOOR]  # only a real stream is noted


def test_connections_per_address_are_capped(serve) -> None:
    listener, _ = serve(max_per_address=2)
    first, second = (call(listener.port, "site/door", DOOR_PASS) for _ in range(2))
    with pytest.raises(libsrt.SrtError, match="1402"):
        call(listener.port, "site/gate", GATE_PASS)
    assert listener.stats()["refused_per_address"] == 1
    libsrt.close(first)
    eventually(lambda: listener.stats()["connections"] == 1)
    libsrt.close(call(listener.port, "site/gate", GATE_PASS))  # room again
    libsrt.close(second)


def test_connections_in_all_are_capped(serve) -> None:
    listener, _ = serve(max_connections=2)
    held = [call(listener.port, "site/door", DOOR_PASS) for _ in range(2)]
    with pytest.raises(libsrt.SrtError, match="1402"):
        call(listener.port, "site/gate", GATE_PASS)
    assert listener.stats()["refused_capacity"] == 1
    for sock in held:
        libsrt.close(sock)


def test_a_silent_publisher_is_dropped_after_the_idle_timeout(serve) -> None:
    listener, recorder = serve(idle_timeout=1.0)
    sock = call(listener.port, "site/door", DOOR_PASS)
    eventually(lambda: len(recorder.delivered) == 1)
    started = time.monotonic()
    eventually(lambda: listener.stats()["refused_timeout"] == 1, timeout=5)
    assert 0.9 <= time.monotonic() - started < 3
    delivered = recorder.delivered[0][1]
    delivered.settimeout(2)
    assert delivered.recv(10) == b""  # the stream's side sees the end
    libsrt.close(sock)


def test_a_publisher_above_the_bitrate_cap_is_dropped(serve) -> None:
    listener, recorder = serve(max_bitrate=100_000, bitrate_window=0.5)  # 0.8 Mbit/s
    sock = call(listener.port, "site/door", DOOR_PASS)
    eventually(lambda: len(recorder.delivered) == 1)
    reader = recorder.delivered[0][1]
    threading.Thread(target=lambda: _drain(reader), daemon=True).start()
    deadline = time.monotonic() + 5
    with pytest.raises(libsrt.SrtError):  # the listener hangs up on it
        while time.monotonic() < deadline:
            libsrt.send(sock, MESSAGE)  # ~ as fast as loopback takes it
            time.sleep(0.001)
    eventually(lambda: listener.stats()["refused_bitrate"] == 1)
    assert any(reason == "BitrateExceeded" for _, reason, _ in recorder.notes)
    libsrt.close(sock)


def test_a_stream_that_does_not_read_costs_at_most_the_buffer_cap(serve) -> None:
    listener, recorder = serve(max_buffer=256 * 1024)
    sock = call(listener.port, "site/door", DOOR_PASS)
    eventually(lambda: len(recorder.delivered) == 1)  # and never read
    sent = 0
    with pytest.raises(libsrt.SrtError):
        while sent < 64 * 1024 * 1024:
            libsrt.send(sock, MESSAGE)
            sent += len(MESSAGE)
            if sent % (100 * len(MESSAGE)) == 0:
                time.sleep(0.005)
    eventually(lambda: listener.stats()["refused_buffer"] == 1)
    assert sent < 16 * 1024 * 1024, sent  # dropped long before: the queue is bounded
    libsrt.close(sock)


def _drain(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def test_an_edge_report_is_noted_once_and_an_unproven_one_refused() -> None:
    """What a worker does with an edge's report of a camera it refused (vouch.py)."""
    token = "edge-token-0123456789abcdef"
    recorder = Recorder()
    listener = SrtListener("127.0.0.1", 0, recorder, edge_token=token)
    listener.publish({DOOR: Publication(DOOR_PASS, 120)})
    listener.start()
    try:
        report = vouch.report_id(DOOR, token, "192.0.2.7:4000", "WrongPassphrase")
        assert report is not None
        for _ in range(3):  # the second and third within NOTE_INTERVAL: not noted again
            with pytest.raises(libsrt.SrtError, match=str(libsrt.REJX_NOTED)):
                call(listener.port, report, None)
        message = "refused a publisher: wrong or missing passphrase (last from 192.0.2.7)"
        assert recorder.notes == [(DOOR, "WrongPassphrase", message)]
        forged = vouch.report_id(
            DOOR, "another-token-0123456789", "192.0.2.7:4000", "BitrateExceeded"
        )
        assert forged is not None
        with pytest.raises(libsrt.SrtError, match="1400"):
            call(listener.port, forged, None)
        assert listener.stats()["refused_stream_id"] == 1
        assert len(recorder.notes) == 1 and listener.stats()["connections"] == 0
    finally:
        listener.close()


def _collect(sock: socket.socket, into: bytearray) -> None:
    sock.settimeout(10)
    try:
        while data := sock.recv(65536):
            into += data
    except OSError:
        pass


def _publish(listener: SrtListener, recorder: Recorder) -> tuple[int, bytearray]:
    """A DOOR publisher whose delivered bytes are collected as they come."""
    sock = call(listener.port, "site/door", DOOR_PASS)
    eventually(lambda: len(recorder.delivered) == 1)
    received = bytearray()
    threading.Thread(
        target=_collect, args=(recorder.delivered[0][1], received), daemon=True
    ).start()
    return sock, received


@pytest.mark.parametrize("turn", [0.0, 0.05])
def test_a_resting_listener_wakes_once_a_turn_not_once_a_message(serve, turn: float) -> None:
    """The edge's listener rests 0.05 s after a wake-up (edge/srt_relay.py's LISTENER_TURN):
    a camera's ~95 messages a second at 1 Mbit/s are read a turn's worth at a time. Every
    byte still arrives, in order."""
    listener, recorder = serve(turn=turn)
    sock, received = _publish(listener, recorder)
    messages = 200  # 2 s at 100 a second, a 1 Mbit/s camera's pace
    before = listener.turns
    for _ in range(messages):
        libsrt.send(sock, MESSAGE)
        time.sleep(0.01)
    eventually(lambda: len(received) == messages * len(MESSAGE))
    turns = listener.turns - before
    if turn:
        assert turns <= 2.5 / turn, turns  # ~40 in 2 s, not one per message
    else:
        assert turns >= messages * 0.8, turns  # the worker's: at once, one wake-up each
    assert bytes(received) == MESSAGE * messages
    libsrt.close(sock)


def test_a_publisher_faster_than_a_turn_is_read_at_its_pace(serve) -> None:
    """A turn reads at most READS_PER_TURN messages of a connection (64: 1280 a second with
    0.05 s turns, 13 Mbit/s); a connection that had more is read again at once, so a
    30 Mbit/s camera is not held back and its buffer does not fill."""
    listener, recorder = serve(turn=0.05)
    sock, received = _publish(listener, recorder)
    messages = 6000  # 7.9 MB in 2.1 s: 30 Mbit/s, under the 40 Mbit/s cap
    started = time.monotonic()
    for i in range(messages):
        libsrt.send(sock, MESSAGE)
        if i % 30 == 29:
            time.sleep(max(0.0, started + (i + 1) / 2850 - time.monotonic()))
    eventually(lambda: len(received) == messages * len(MESSAGE), timeout=5)
    assert time.monotonic() - started < 4
    assert listener.stats()["refused_buffer"] == 0
    libsrt.close(sock)


def test_each_connection_gets_buffers_for_its_latency_not_the_default(serve) -> None:
    """libsrt's default flow window (25,600 packets) cost 0.7 MB per connection in loss
    lists alone; the listener sets each one's from its latency at the bitrate cap."""
    listener, _ = serve()
    sock = call(listener.port, "site/door", DOOR_PASS)
    eventually(lambda: listener.stats()["connections"] == 1)
    (accepted,) = list(listener._connections)
    expected = buffer_packets(120, MAX_BITRATE)
    assert expected == 2356
    assert libsrt.get_int(accepted, libsrt.SRTO_FC) == expected
    assert libsrt.get_int(accepted, libsrt.SRTO_RCVBUF) == expected * 1472
    libsrt.close(sock)
