"""The pure parts of the RTMP ingest's defences: caps, key gate, clocks, refusals, redaction.

Each limit's number is pinned here (a change must be deliberate: the threat
model documents them), and the bookkeeping that enforces it is held to its
invariants by properties. The behaviour against real clients is
tests/security's.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream import settings as camstream_settings
from camstream_worker.metrics.worker import RTMP_REFUSAL_REASONS
from camstream_worker.protocols.rtmp import chunks
from camstream_worker.protocols.rtmp.names import redact_app, redact_name
from camstream_worker.servers.rtmp import limits
from camstream_worker.servers.rtmp.admission import Admission, address_key
from camstream_worker.servers.rtmp.clocks import StallClock, TokenBucket
from camstream_worker.servers.rtmp.keygate import KeyGate
from camstream_worker.servers.rtmp.refusals import INTERVAL, LINES_PER_INTERVAL, Refusals


def test_the_numbers() -> None:
    """The documented limits (docs/threat-model-rtmp.md); change both together."""
    defaults = limits.Limits()
    assert chunks.MIN_CHUNK_SIZE == 128
    assert (defaults.handshake_timeout, defaults.idle_timeout) == (10.0, 30.0)
    assert defaults.pre_publish_max_message == 64 * 1024
    assert defaults.pre_publish_max_pending == 128 * 1024
    assert defaults.pre_publish_max_bytes == 256 * 1024
    assert defaults.pre_publish_max_messages == 64
    assert defaults.max_pending_per_address == 32
    assert defaults.key_failure_pause == 2.0
    assert (defaults.max_message_size, defaults.max_pending) == (8 * 2**20, 16 * 2**20)
    assert (defaults.messages_per_second, defaults.message_burst) == (2000, 4000)
    assert (defaults.pings_per_second, defaults.ping_burst) == (2, 8)
    assert defaults.work_budget == 256
    assert (defaults.write_high_water, defaults.max_write_buffer) == (64 * 1024, 256 * 1024)
    assert defaults.close_grace == 2.0
    assert set(RTMP_REFUSAL_REASONS) == {
        "unauthorized",
        "protocol",
        "timeout",
        "capacity",
        "per_address",
        "too_large",
        "flood",
        "slow_reader",
    }


@pytest.mark.parametrize(
    ("nofile", "configured", "cap"),
    [
        (256, None, 64),  # (256 - 128) / 2
        (1024, None, 448),
        (1 << 20, None, (1 << 20) // 2 - 64),
        (1 << 20, 10_000, 10_000),
        (1024, 10_000, 448),  # never above what descriptors allow
        (100, None, 16),  # a floor, so a tiny limit still takes a few publishers
    ],
)
def test_connection_cap_is_sized_from_the_descriptor_limit(
    nofile: int, configured: int | None, cap: int
) -> None:
    assert limits.connection_cap(configured, nofile) == cap


def test_the_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    """In a child process started with soft 256 and hard 1024 (this one stays as it is)."""
    script = (
        "import logging, resource\n"
        "from camstream_worker.servers.rtmp.limits import raise_fd_limit\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    result = subprocess.run(
        [sys.executable, "-c", script],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["1024", "1024"]


def test_limits_from_the_environment() -> None:
    environ = {
        "CAMSTREAM_RTMP_MAX_CONNECTIONS": "500",
        "CAMSTREAM_RTMP_MAX_PENDING_PER_ADDRESS": "4",
        "CAMSTREAM_RTMP_HANDSHAKE_TIMEOUT": "5",
        "CAMSTREAM_RTMP_IDLE_TIMEOUT": "12.5",
        "CAMSTREAM_RTMP_KEY_FAILURE_PAUSE": "0",
    }
    parsed = limits.Limits.from_env(environ)
    assert (parsed.max_connections, parsed.max_pending_per_address) == (500, 4)
    assert (parsed.handshake_timeout, parsed.idle_timeout) == (5.0, 12.5)
    assert parsed.key_failure_pause == 0.0
    assert limits.Limits.from_env({}) == limits.Limits()
    with pytest.raises(camstream_settings.SettingError, match="CAMSTREAM_RTMP_IDLE_TIMEOUT=0"):
        limits.Limits.from_env({"CAMSTREAM_RTMP_IDLE_TIMEOUT": "0"})


# -- admission


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
    ],
)
def test_address_key_groups_ipv6_by_64(host: str, key: str) -> None:
    assert address_key(host) == key


_EVENTS = st.lists(
    st.tuples(st.sampled_from(["connect", "publish", "close"]), st.integers(0, 3)), max_size=200
)


@settings(max_examples=200, deadline=None)
@given(_EVENTS, st.integers(1, 6), st.integers(1, 4))
def test_admission_never_exceeds_its_caps(
    events: list[tuple[str, int]], cap: int, per_address: int
) -> None:
    """Against a model: open connections by address, each a stranger or a publisher."""
    admission = Admission(cap, per_address)
    open_: list[tuple[str, bool]] = []  # (address, stranger)
    for verb, who in events:
        address = f"10.0.0.{who}"
        if verb == "connect":
            strangers = sum(1 for a, s in open_ if a == address and s)
            refusal = admission.admit(address)
            if len(open_) >= cap:
                assert refusal == "capacity"
            elif strangers >= per_address:
                assert refusal == "per_address"
            else:
                assert refusal is None
                open_.append((address, True))
        elif verb == "publish":
            if (address, True) in open_:
                open_[open_.index((address, True))] = (address, False)
                admission.published(address)
        elif open_:
            closing = next((c for c in open_ if c[0] == address), None)
            if closing is not None:
                open_.remove(closing)
                admission.release(address, pending=closing[1])
        assert admission.total == len(open_) <= cap
        for n in range(4):
            strangers = sum(1 for a, s in open_ if a == f"10.0.0.{n}" and s)
            assert admission.pending(f"10.0.0.{n}") == strangers <= per_address


# -- the key gate


async def test_key_checks_take_turns_per_address_with_a_pause_after_a_failure() -> None:
    gate = KeyGate(0.2, asyncio.get_running_loop().time)
    log: list[tuple[str, str, float]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def attempt(address: str, name: str, *, wrong: bool) -> None:
        async with gate.turn(address) as turn:
            log.append((address, name, round(loop.time() - start, 1)))
            await asyncio.sleep(0.01)  # the check takes a moment: others wait
            if wrong:
                turn.failed()

    await asyncio.gather(
        attempt("a", "wrong-1", wrong=True),
        attempt("a", "wrong-2", wrong=True),
        attempt("a", "right", wrong=False),
        attempt("b", "other-address", wrong=False),
    )
    times = {name: at for _, name, at in log}
    assert times["wrong-1"] == 0.0 and times["other-address"] == 0.0  # no waiting elsewhere
    assert times["wrong-2"] == pytest.approx(0.2, abs=0.05)  # after wrong-1's pause
    assert times["right"] == pytest.approx(0.4, abs=0.05)  # after wrong-2's pause
    assert gate.waiting("a") == 0 and gate.blocked() == 0  # a right key starts no pause


async def test_hanging_up_does_not_shorten_the_pause() -> None:
    gate = KeyGate(0.2, asyncio.get_running_loop().time)
    loop = asyncio.get_running_loop()

    async def fail_and_hang_up() -> None:
        async with gate.turn("a") as turn:
            turn.failed()
            raise asyncio.CancelledError  # the client left at once

    with pytest.raises(asyncio.CancelledError):
        await fail_and_hang_up()
    started = loop.time()
    async with gate.turn("a"):
        waited = loop.time() - started
    assert waited >= 0.19


# -- clocks


@given(st.lists(st.floats(0, 5), min_size=1, max_size=50))
def test_the_stall_clock_leaves_out_exactly_the_late_wake_ups(lates: list[float]) -> None:
    clock = StallClock()
    now = 0.0
    for late in lates:
        clock.expect(now + 0.25)
        now += 0.25 + late
        assert clock.woke(now) == pytest.approx(late)
    assert clock.stalled == pytest.approx(sum(lates))
    assert clock.time(now) == pytest.approx(0.25 * len(lates))


def test_token_bucket_rate_burst_and_grant() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(20, 0.0) and not bucket.take(1, 0.0)
    assert bucket.take(10, 1.0) and not bucket.take(1, 1.0)  # ten a second
    assert not bucket.take(25, 100.0)  # refills to the burst, not past it
    bucket.grant(8.0)  # the server stalled 8 s: 80 more, past the burst
    assert bucket.take(100, 100.0)
    assert not bucket.take(1, 99.0)  # a clock going back refills nothing


# -- refusals


def test_refusals_are_counted_and_their_log_lines_capped(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = Refusals(lambda: now[0], logging.getLogger("test.refusals"))
    caplog.set_level(logging.WARNING, logger="test.refusals")
    for _ in range(100):
        refusals.refuse("protocol", "rtmp 192.0.2.1:5", "protocol error: x")
    refusals.refuse("timeout", "rtmp 192.0.2.1:6", "not publishing")
    assert len(caplog.records) == LINES_PER_INTERVAL + 1
    now[0] = INTERVAL
    refusals.refuse("protocol", "rtmp 192.0.2.1:7", "protocol error: y")
    assert f"{100 - LINES_PER_INTERVAL} more refused as protocol" in caplog.records[-1].getMessage()
    stats = refusals.stats()
    assert stats["refused_protocol"] == 101 and stats["refused_timeout"] == 1
    assert set(stats) == {f"refused_{reason}" for reason in RTMP_REFUSAL_REASONS}
    with pytest.raises(ValueError, match="unknown refusal reason"):
        refusals.refuse("made-up", "", "")


# -- keys never in log lines


@pytest.mark.parametrize(
    ("app", "shown"),
    [
        ("live", "live"),
        ("default/gate", "default/gate"),
        ("default/gate/S3CRET", "default/gate/***"),
        ("/default/gate/S3CRET/", "/default/gate/***/"),
        ("default/gate/S3CRET/more", "default/gate/***/***"),
        ("default/gate?key=S3CRET", "default/gate?key=***"),
        ("default/gate?S3CRET", "default/gate?***"),
    ],
)
def test_redact_app_hides_what_follows_the_stream_and_query_values(app: str, shown: str) -> None:
    assert redact_app(app) == shown


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=6, max_size=40),
    st.sampled_from(
        [
            ("default/gate/{k}", ""),
            ("default/gate", "{k}"),
            ("default", "gate/{k}"),
            ("default/gate", "cam?key={k}"),
            ("default/gate?key={k}", ""),
            ("live", "{k}"),
        ]
    ),
)
def test_a_key_never_survives_redaction_wherever_it_is_cut(
    key: str, shape: tuple[str, str]
) -> None:
    """However a client cuts /<namespace>/<name>/<key> into app and name."""
    app, name = (part.format(k=key) for part in shape)
    shown = f"{redact_app(app)}/{redact_name(name)}"
    assert key not in shown.replace("default", "").replace("gate", "").replace("live", "")
