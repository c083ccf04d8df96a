"""The RTMP attacks of issue 8, items 3 to 5, against one real worker.

The worker runs one engine process: the harshest set-up, since the attackers,
the healthy camera and the HTTP server then share one event loop (with
several, an attack reaches only the engine process of the stream it names).
The attacks run one after the other on the same worker, each for a few
seconds, while a ``Watch`` (conftest.py) checks the healthy stream's segment
cadence, the worker's memory and /healthz. Each test also checks the
attacker's refusal (the reason counted in camstream_rtmp_rejected_total, the
connection closed) and, at the end of the module, that no stream key reached
the log, the status API or the metrics.

Attackers come from their own loopback addresses (127.0.0.2 and up) unless a
test is about sharing one; "keyed" attackers hold the key of a stream of
their own (``atk*``): what a stolen key allows is bounded too.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from camstream_worker.protocols.rtmp.chunks import encode_message
from tests.harness.cameras import make_clip
from tests.harness.rtmp_client import (
    AUDIO,
    DATA,
    VIDEO,
    Closed,
    RtmpClient,
    flv_tags,
    is_keyframe,
    is_sequence_header,
)
from tests.media.worker_process import WorkerProcess
from tests.security.conftest import (
    HEALTHY_KEY,
    Watch,
    assert_no_secrets,
    healthy_camera,
    rejected_since,
    rtmp_stream,
    running_worker,
)

pytestmark = [pytest.mark.security, pytest.mark.timeout(240)]

ATTACK_SECONDS = 8.0
KEYS = {
    "gate": "g4te-k3y-51c0ffee",
    "appkey": "4ppk3y-k3y-0b5e55ed",
    "nokey": "n0k3yframe-k3y-9a7b",
    "bigframes": "b1gframes-k3y-c4fe",
    **{f"atk{i}": f"4tk{i}-k3y-{i}d00d{i}" for i in range(1, 5)},
}
WRONG_KEY_PREFIX = "wr0ng-gu3ss-"
IDLE_TIMEOUT = 4  # short, so the stall test below means something


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    manifests = rtmp_stream("healthy", HEALTHY_KEY, stallTimeoutSeconds=IDLE_TIMEOUT)
    for name, key in KEYS.items():
        manifests += rtmp_stream(name, key)
    with (
        running_worker(
            manifests,
            tmp_path_factory.mktemp("attacked"),
            processes=1,
            env={"CAMSTREAM_RTMP_IDLE_TIMEOUT": str(IDLE_TIMEOUT)},
        ) as started,
        healthy_camera(started),
    ):
        yield started
        # Whatever the attacks did, no key shows anywhere.
        assert_no_secrets(started, HEALTHY_KEY, *KEYS.values(), WRONG_KEY_PREFIX)


def run_attackers(
    count: int, attack: Callable[[int, threading.Event], None], seconds: float = ATTACK_SECONDS
) -> None:
    """`count` threads running attack(index, stop) until `seconds` pass; re-raise their errors."""
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(attack, index, stop) for index in range(count)]
        concurrent.futures.wait(futures, timeout=seconds)
        stop.set()
        for future in futures:
            future.result(timeout=30)


def keyed(worker: WorkerProcess, stream: str, source: str) -> RtmpClient:
    """A publisher holding `stream`'s key, publishing (raises if refused)."""
    client = RtmpClient(worker.rtmp_port, source=source)
    client.handshake()
    code = client.publish(f"default/{stream}", KEYS[stream])
    assert code == "NetStream.Publish.Start", code
    return client


def stranger(worker: WorkerProcess, source: str, app: str = "default/gate") -> RtmpClient:
    """A client without a key, after its handshake and connect."""
    client = RtmpClient(worker.rtmp_port, source=source)
    client.handshake()
    client.connect(app)
    return client


def paced(stop: threading.Event, rate: float, block: int) -> Iterator[int]:
    """Yield block counts so that `block`-byte sends run at `rate` bytes a second."""
    started = time.monotonic()
    for sent in itertools.count():
        ahead = sent * block / rate - (time.monotonic() - started)
        if ahead > 0 and stop.wait(ahead):
            return
        if stop.is_set():
            return
        yield sent


def interleaved_messages(length: int, chunk: int = 128) -> bytes:
    """Two data messages on chunk streams 4 and 5, chunk by chunk alternately.

    Interleaving defeats the decoder's fast path for back-to-back runs, so
    every chunk takes a decoding step: what made chunk size 1 quadratic.
    """

    def chunks_of(csid: int) -> list[bytes]:
        raw = encode_message(csid, DATA, 1, 0, os.urandom(length), chunk)
        first = 12 + chunk
        return [raw[:first]] + [raw[i : i + chunk + 1] for i in range(first, len(raw), chunk + 1)]

    pairs = zip(chunks_of(4), chunks_of(5), strict=True)
    return b"".join(a + b for a, b in pairs)


def worker_cpu_seconds(worker: WorkerProcess) -> float:
    times = psutil.Process(worker.pid).cpu_times()
    return times.user + times.system


# -- item 3: unauthenticated clients stalling or exhausting the worker


def test_chunk_size_1_is_refused_and_interleaved_chunks_cost_linear_time(
    worker: WorkerProcess,
) -> None:
    """Four connections at ~0.7 MB/s of interleaved chunk streams: the issue's 45 s stall.

    Strangers asking for chunk size 1 are refused at once (SRS's minimum is
    128). Four keyed publishers then interleave two 4 MiB messages chunk by
    chunk at the minimum size, which the server must decode in linear time
    while the healthy camera goes on.
    """
    rate = 700_000
    stream = interleaved_messages(4 * 1024 * 1024)
    before = worker_cpu_seconds(worker)
    refused = rejected_since(worker, {})
    survived: list[bool] = []

    def attack(index: int, stop: threading.Event) -> None:
        (chunk_size_1 if index < 4 else interleave)(index % 4, stop)

    def chunk_size_1(index: int, stop: threading.Event) -> None:
        while not stop.is_set():
            with stranger(worker, "127.0.0.2") as client:
                try:
                    client.set_chunk_size(1)
                    for n in paced(stop, rate, 4096):
                        client.raw(stream[(n * 4096) % len(stream) :][:4096])
                except Closed:
                    continue

    def interleave(index: int, stop: threading.Event) -> None:
        with keyed(worker, f"atk{index + 1}", f"127.0.1.{index + 1}") as client:
            try:
                for n in paced(stop, rate, 8192):
                    client.raw(stream[n * 8192 : (n + 1) * 8192])
            except Closed:
                survived.append(False)
                return
            survived.append(not client.closed_within(0.2))

    with Watch(worker) as watch:
        run_attackers(8, attack)
    cpu = worker_cpu_seconds(worker) - before
    print(f"\ninterleaved 4 x 0.7 MB/s: {watch.figures()}, worker CPU {cpu:.1f} s")
    watch.assert_undisturbed(rss_growth_mb=96)  # four half-received 4 MiB messages each
    assert survived == [True] * 4, "chunk size 128 with interleaving is legal RTMP"
    counts = rejected_since(worker, refused)
    assert counts.get("protocol", 0) >= 4, counts  # "chunk size 1 outside 128..16777215"
    assert "chunk size 1 outside 128" in worker.log()


def test_zero_length_message_flood(worker: WorkerProcess) -> None:
    """Empty messages cost a decoding step each and carry nothing: the issue's 8 s in 10 s."""
    refused = rejected_since(worker, {})
    empty_commands = encode_message(3, 20, 0, 0, b"") + b"\xc3" * 65535  # fmt 3: "another one"
    empty_audio = encode_message(4, AUDIO, 1, 0, b"") + b"\xc4" * 65535

    def flood(index: int, stop: threading.Event) -> None:
        while not stop.is_set():
            if index < 2:
                client = stranger(worker, "127.0.0.3")
                payload = empty_commands
            else:
                client = keyed(worker, f"atk{index - 1}", "127.0.0.3")
                payload = empty_audio
            with client:
                try:
                    while not stop.is_set():
                        client.raw(payload)
                except Closed:
                    pass

    with Watch(worker) as watch:
        run_attackers(4, flood)
    print(f"\nempty-message flood: {watch.figures()}")
    watch.assert_undisturbed(rss_growth_mb=32)
    counts = rejected_since(worker, refused)
    assert counts.get("flood", 0) >= 4, counts
    log = worker.log()
    assert "more than 64 messages before publishing" in log
    assert "more than 2000 messages a second" in log


def test_forty_connections_holding_two_almost_complete_8_mib_messages(
    worker: WorkerProcess,
) -> None:
    """40 strangers each starting two 8 MiB messages took RSS from 54 MB to 1.04 GB.

    Before a publish, a message may be 64 KiB: the header of an 8 MiB one is
    refused before any of it is held. And one address may hold only 32
    connections that are not publishing.
    """
    refused = rejected_since(worker, {})
    # One address holding 40 idle connections: 32 are admitted, 8 refused.
    idle = [RtmpClient(worker.rtmp_port, source="127.0.0.4") for _ in range(40)]
    try:
        time.sleep(1.0)
        assert sum(client.closed_within(0) for client in idle) == 8
        assert rejected_since(worker, refused).get("per_address") == 8
    finally:
        for client in idle:
            client.close()

    almost = 8 * 1024 * 1024 - 16
    header = encode_message(4, VIDEO, 1, 0, b"\0" * almost)[:12]
    body = os.urandom(almost - 128)
    results: list[bool] = []

    def hold_two(index: int) -> None:
        with stranger(worker, f"127.0.2.{index % 2 + 1}") as client:
            try:
                for csid_header in (header, b"\x05" + header[1:]):
                    client.raw(csid_header)
                    client.raw(body[: 1024 * 1024])  # the server refuses at the header
                    client.raw(body)
            except (Closed, TimeoutError):
                pass
            results.append(client.closed_within(5))

    with Watch(worker) as watch:
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            list(pool.map(hold_two, range(40)))
        time.sleep(2)  # let the watch see a segment or two more
    print(f"\n40 x two 8 MiB messages: {watch.figures()}")
    watch.assert_undisturbed(rss_growth_mb=32)
    assert results == [True] * 40, "every connection must be closed by the server"
    counts = rejected_since(worker, refused)
    assert counts.get("too_large", 0) >= 40, counts
    assert "exceeds the 65536 byte cap" in worker.log()


def test_ping_flood_whose_replies_are_never_read(worker: WorkerProcess) -> None:
    """Ping requests ask the server to write; a client that never reads made memory grow."""
    refused = rejected_since(worker, {})
    unread: list[int] = []

    def pings(index: int, stop: threading.Event) -> None:
        if index == 0:  # a stranger: more than 64 messages before publishing
            with stranger(worker, "127.0.0.5") as client:
                try:
                    for n in range(200):
                        client.ping(n)
                except Closed:
                    pass
                assert client.closed_within(5)
            return
        with keyed(worker, f"atk{index}", "127.0.0.5") as client:
            time.sleep(0.5)
            start = client.unread()  # the publish's own replies
            for n in paced(stop, 1500, 10):  # 1500 pings a second, under the message cap
                for k in range(10):
                    client.ping(n * 10 + k)
            time.sleep(0.5)
            unread.append(client.unread() - start)

    with Watch(worker) as watch:
        run_attackers(3, pings)
    print(f"\nping flood, never read: {watch.figures()}, replies queued per client {unread} bytes")
    watch.assert_undisturbed(rss_growth_mb=32)
    # 12,000 pings each; a reply is 18 bytes, and at most 8 + 2 a second are sent.
    replies = [size // 18 for size in unread]
    assert all(1 <= count <= 8 + 2 * (ATTACK_SECONDS + 1) for count in replies), replies
    assert rejected_since(worker, refused).get("flood", 0) >= 1


# -- item 4: wrong keys


def test_wrong_keys_at_22_tries_a_second_are_spaced_summarized_and_not_logged(
    worker: WorkerProcess,
) -> None:
    refused = rejected_since(worker, {})
    log_lines = len(worker.log().splitlines())
    gate_seen = [worker.stream("gate")]
    outcomes: list[str] = []
    seconds = 6.0

    def knock(number: int) -> None:
        try:
            with RtmpClient(worker.rtmp_port, source="127.0.0.6", timeout=15) as client:
                client.handshake()
                outcomes.append(client.publish("default/gate", f"{WRONG_KEY_PREFIX}{number}"))
        except (Closed, OSError):
            outcomes.append("closed")

    stop = threading.Event()

    def poll_status() -> None:
        while not stop.wait(0.2):
            gate_seen.append(worker.stream("gate"))

    poller = threading.Thread(target=poll_status, daemon=True)
    poller.start()
    started = time.monotonic()
    with Watch(worker) as watch, concurrent.futures.ThreadPoolExecutor(64) as pool:
        for number in range(int(22 * seconds)):
            pool.submit(knock, number)
            time.sleep(max(0.0, started + (number + 1) / 22 - time.monotonic()))
    stop.set()
    poller.join()
    elapsed = time.monotonic() - started
    print(f"\n22 wrong keys a second: {watch.figures()}")
    watch.assert_undisturbed(rss_growth_mb=32)
    counts = rejected_since(worker, refused)
    print(f"outcomes over {elapsed:.0f} s: {counts}")
    # Every try ended with a refusal: a rejected publish, or a closed connection.
    assert len(outcomes) == int(22 * seconds)
    assert set(outcomes) <= {"NetStream.Publish.BadName", "closed"}, set(outcomes)
    # One key check per 2 s from this address (keygate.py), whatever the rate.
    checks = counts.get("unauthorized", 0)
    assert 2 <= checks <= elapsed / 2 + 2, counts
    assert counts.get("timeout", 0) + counts.get("per_address", 0) >= 22 * seconds - checks - 2
    # Summarized: a few log lines (refusals.py: 5 per reason per 10 s), not two
    # per try; and at most one status note.
    new_lines = worker.log().splitlines()[log_lines:]
    windows = int(elapsed // 10) + 1
    assert len(new_lines) <= 3 * 5 * windows + 5, "\n".join(new_lines)
    notes = {(s["reason"], s["message"], s["since"]) for s in gate_seen}
    assert len(notes) <= 2, notes
    assert gate_seen[-1]["reason"] == "WrongStreamKey"


def test_a_key_in_the_app_name_is_accepted_but_never_logged(worker: WorkerProcess) -> None:
    """``app=default/appkey/<KEY>`` with an empty publish name: the whole path as the app."""
    key = KEYS["appkey"]
    with RtmpClient(worker.rtmp_port, source="127.0.0.7") as wrong:
        wrong.handshake()
        assert wrong.publish(f"default/appkey/{WRONG_KEY_PREFIX}app", "") == (
            "NetStream.Publish.BadName"
        )
    with RtmpClient(worker.rtmp_port, source="127.0.0.8") as client:
        client.handshake()
        assert client.publish(f"default/appkey/{key}", "") == "NetStream.Publish.Start"
        publish_clip(client, stop_when=lambda: worker.stream("appkey")["phase"] == "Live")
    log = worker.log()
    assert "default/appkey/***" in log
    assert key not in log and WRONG_KEY_PREFIX not in log


def publish_clip(
    client: RtmpClient,
    *,
    stop_when: Callable[[], bool],
    within: float = 20.0,
    speed: float = 1.0,
    keyframes: bool = True,
) -> int:
    """Send a clip's FLV tags, looped, at `speed` times real time; returns the media ms sent.

    keyframes=False: after the first keyframe no other is sent (only the
    frames between them), as a publisher that never sends another would.
    """
    tags = list(flv_tags(make_clip(seconds=4, size="320x240", bitrate_kbps=400)))
    span = max(ts for _, ts, _ in tags) + 40
    started = time.monotonic()
    sent_first_keyframe = False
    for loop in itertools.count():
        for tag_type, ts, body in tags:
            if tag_type not in (AUDIO, VIDEO):
                continue
            if is_sequence_header(tag_type, body) and loop:
                continue
            if is_keyframe(tag_type, body):
                if sent_first_keyframe and not keyframes:
                    continue
                sent_first_keyframe = True
            media = loop * span + ts
            ahead = media / 1000 / speed - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            client.tag(tag_type, media, body)
            if time.monotonic() - started > within or (ts == 0 and stop_when()):
                return media
    raise AssertionError("unreachable")


# -- item 5: a publisher that never sends another keyframe


def test_a_publisher_that_never_sends_a_keyframe_gets_capped_segments(
    worker: WorkerProcess,
) -> None:
    """One segment grew without bound (240 MB held, a 258 MB file); now cut at 15 s."""
    folder = worker.hls_dir / "default" / "nokey"
    with Watch(worker) as watch, keyed(worker, "nokey", "127.0.0.9") as client:
        # Three times real time, so 30 s of media take 10 s.
        publish_clip(
            client,
            speed=3.0,
            keyframes=False,
            within=30,
            stop_when=lambda: len(list(folder.glob("seg*.ts"))) >= 2,
        )
        status = worker.stream("nokey")  # while it still publishes
    print(f"\nno keyframes: {watch.figures()}")
    watch.assert_undisturbed(rss_growth_mb=32)
    assert status["reason"] == "KeyframeIntervalTooLong", status
    assert "keyframe interval to at most 2 s" in status["message"]
    playlist = worker.playlist("nokey")
    durations = [segment.duration for segment in playlist.segments]
    assert durations and all(d <= 15.5 for d in durations), durations
    assert any(d >= 14.5 for d in durations), durations
    assert not playlist.independent_segments  # not every listed segment starts on a keyframe


def test_huge_frames_without_keyframes_are_capped_by_size(worker: WorkerProcess) -> None:
    """1 MiB frames at 10 a second and no keyframe: the 32 MiB segment cap bounds memory."""
    folder = worker.hls_dir / "default" / "bigframes"
    tags = list(flv_tags(make_clip(seconds=4, size="320x240", bitrate_kbps=400)))
    header = next(b for t, _, b in tags if t == VIDEO and is_sequence_header(t, b))
    keyframe = next(b for t, _, b in tags if is_keyframe(t, b))
    # An inter frame: AVC NALU packet, one 1 MiB NAL unit of a non-IDR slice.
    nal = b"\x41" + os.urandom((1 << 20) - 1)
    junk = b"\x27\x01\x00\x00\x00" + struct.pack(">I", len(nal)) + nal
    with Watch(worker) as watch, keyed(worker, "bigframes", "127.0.0.10") as client:
        client.set_chunk_size(65536)
        client.tag(VIDEO, 0, header)
        client.tag(VIDEO, 0, keyframe)
        started = time.monotonic()
        for n in range(1, 61):
            client.tag(VIDEO, n * 100, junk)
            time.sleep(max(0.0, started + n / 10 - time.monotonic()))
        time.sleep(1)
        status = worker.stream("bigframes")  # while it still publishes
    print(f"\n1 MiB frames, no keyframe: {watch.figures()}")
    watch.assert_undisturbed(rss_growth_mb=128)  # one 32 MiB segment held, and muxed
    sizes = [path.stat().st_size for path in folder.glob("seg*.ts")]
    assert sizes, "the capped segment must be written"
    assert max(sizes) <= 34 * 2**20, sizes  # 32 MiB of packets, plus MPEG-TS framing
    assert status["reason"] == "KeyframeIntervalTooLong", status


# -- the server's own stall is not the camera's


def test_a_stall_of_the_server_is_not_blamed_on_the_camera(worker: WorkerProcess) -> None:
    """The worker stopped for 8 s (longer than the stream's 4 s stall and idle timeouts).

    Its camera kept sending into the kernel meanwhile. Without discounting
    the server's own stall, the watchdog and the RTMP idle check would drop
    the camera and mark it Reconnecting.
    """
    before = worker.stream("healthy")
    assert before["phase"] == "Live"
    log_lines = len(worker.log().splitlines())
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        time.sleep(2 * IDLE_TIMEOUT)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    after = worker.wait_segments("healthy", 2, timeout=20)
    assert after["phase"] == "Live" and after["reconnects"] == before["reconnects"], after
    new_lines = "\n".join(worker.log().splitlines()[log_lines:])
    assert "no data for" not in new_lines and "Stalled" not in new_lines, new_lines
    assert "event loop stalled" in new_lines
