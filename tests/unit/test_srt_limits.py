"""The SRT ingest's numbers and settings (servers/srt/limits.py); the caps themselves are
pushed past in tests/srt/test_srt_limits.py with real libsrt on both ends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream.settings import SettingError
from camstream_worker.metrics.worker import SRT_REFUSAL_REASONS, worker_registry
from camstream_worker.servers.srt import listener
from camstream_worker.servers.srt.limits import (
    BUFFER_SLACK,
    MAX_BITRATE,
    MIN_PACKETS,
    PACKET_ROOM,
    RECEIVE_BUFFER,
    SrtLimits,
    buffer_packets,
)
from camstream_worker.sources.srt import passphrase_problem


def test_the_numbers() -> None:
    """The documented limits (docs/threat-model-srt.md); change both together."""
    defaults = SrtLimits()
    assert (defaults.max_connections, defaults.max_per_address) == (1000, 32)
    assert (defaults.handshake_timeout, defaults.idle_timeout) == (3.0, 10.0)
    assert (defaults.max_bitrate * 8, defaults.bitrate_window) == (40_000_000, 2.0)
    assert (defaults.max_buffer, defaults.receive_buffer) == (4 * 2**20, 8 * 2**20)
    assert listener.NOTE_INTERVAL == 30.0
    assert set(SRT_REFUSAL_REASONS) == {
        "stream_id", "unauthorized", "capacity", "per_address", "timeout", "bitrate", "buffer",
        "lookup", "draining",  # an edge's (edge/srt_relay.py): try again
    }  # fmt: skip


def test_settings_from_the_environment_name_the_variable() -> None:
    tuned = SrtLimits.from_env(
        {"CAMSTREAM_SRT_MAX_PER_ADDRESS": "4", "CAMSTREAM_SRT_MAX_BITRATE_BPS": "8000000"}
    )
    assert (tuned.max_per_address, tuned.max_bitrate) == (4, 1_000_000)
    with pytest.raises(SettingError, match="CAMSTREAM_SRT_MAX_CONNECTIONS=lots"):
        SrtLimits.from_env({"CAMSTREAM_SRT_MAX_CONNECTIONS": "lots"})


def test_passphrase_rule_never_quotes_it() -> None:
    assert passphrase_problem("x" * 10) is None and passphrase_problem("x" * 79) is None
    for bad in ("short-one", "y" * 80):
        problem = passphrase_problem(bad)
        assert problem is not None and "10 to 79" in problem and bad not in problem


def test_publication_repr_hides_the_passphrase() -> None:
    assert "hunter2hunter2" not in repr(listener.Publication("hunter2hunter2", 120))


def test_srt_metrics_are_zero_without_an_srt_port_and_counted_with_one() -> None:
    def names(registry: object) -> set[str]:
        return {m.name for m in registry.collect()}  # type: ignore[attr-defined]

    without = worker_registry(dict)
    srt_families = [m for m in without.collect() if m.name.startswith("camstream_srt")]
    assert {m.name for m in srt_families} == {
        "camstream_srt_connections", "camstream_srt_handshakes",
        "camstream_srt_received_bytes", "camstream_srt_rejected", "camstream_srt_edge_legs",
    }  # fmt: skip
    assert all(s.value == 0 for m in srt_families for s in m.samples)
    stats = {"connections": 2, "refused_bitrate": 1, "bytes_received": 10}
    with_srt = worker_registry(dict, srt_stats=lambda: stats)
    assert {"camstream_srt_connections", "camstream_srt_rejected"} <= names(with_srt)
    rejected = next(m for m in with_srt.collect() if m.name == "camstream_srt_rejected")
    assert {s.labels["reason"] for s in rejected.samples} == set(SRT_REFUSAL_REASONS)
    stats |= {"leg_accepted": 3, "leg_refused_unauthorized": 2}
    legs = next(m for m in with_srt.collect() if m.name == "camstream_srt_edge_legs")
    by_outcome = {s.labels["outcome"]: s.value for s in legs.samples if s.name.endswith("_total")}
    assert by_outcome == {"accepted": 3, "malformed": 0, "unauthorized": 2, "capacity": 0}


@given(
    latency=st.integers(20, 8000),
    bitrate=st.integers(1, 100_000_000),
    cap=st.integers(0, 64 * 2**20),
)
def test_a_connections_buffer_holds_its_latency_at_the_cap_within_bounds(
    latency: int, bitrate: int, cap: int
) -> None:
    packets = buffer_packets(latency, bitrate, cap)
    assert MIN_PACKETS <= packets
    assert packets <= max(MIN_PACKETS, cap // PACKET_ROOM)
    needed = (latency / 1000 + BUFFER_SLACK) * bitrate / 1316
    if packets < cap // PACKET_ROOM:  # not capped: the latency and the slack fit
        assert packets >= needed
        assert packets < needed + 1 or packets == MIN_PACKETS
    assert buffer_packets(latency, bitrate, cap) <= buffer_packets(
        min(latency + 100, 8000), bitrate, cap
    )


def test_the_default_buffers() -> None:
    """A 120 ms camera at the 40 Mbit/s cap: 2,356 packets (3.1 MB of room, 0.2 MB of loss
    lists); the spec's longest latency (8 s) reaches RECEIVE_BUFFER's cap, as before."""
    assert buffer_packets(120, MAX_BITRATE) == 2356
    assert buffer_packets(8000, MAX_BITRATE) == RECEIVE_BUFFER // PACKET_ROOM == 5698
