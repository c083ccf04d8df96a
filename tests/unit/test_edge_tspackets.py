"""Whole MPEG-TS packets and PATs for the edge's SRT relay (edge/tspackets.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.edge import tspackets
from camstream_worker.edge.tspackets import PACKET, Aligner, pat_start


def packet(pid: int, start: bool = False, fill: int = 0) -> bytes:
    flags = (0x40 if start else 0) | (pid >> 8)
    return bytes([tspackets.SYNC, flags, pid & 0xFF, 0x10]) + bytes([fill]) * (PACKET - 4)


STREAM = b"".join(
    packet(0, start=True) + packet(0x1000, start=True) + packet(0x100, start=i % 3 == 0, fill=i)
    for i in range(12)
)


@given(st.lists(st.integers(1, 2000), max_size=40))
def test_any_cut_of_an_aligned_stream_comes_out_unchanged_in_whole_packets(cuts: list[int]) -> None:
    aligner = Aligner()
    out, at = b"", 0
    for size in [*cuts, len(STREAM)]:
        piece = aligner.feed(STREAM[at : at + size])
        assert len(piece) % PACKET == 0
        out += piece
        at += size
        if at >= len(STREAM):
            break
    assert out == STREAM[: len(out)] and len(STREAM) - len(out) < PACKET
    assert aligner.skipped == 0


def test_a_stream_joined_mid_packet_starts_at_the_next_packet() -> None:
    aligner = Aligner()
    out = aligner.feed(STREAM[100:])
    assert out == STREAM[PACKET : len(STREAM) - (len(STREAM) - PACKET) % PACKET]
    assert aligner.skipped == PACKET - 100


def test_pat_start_finds_the_first_pat_only_on_a_packet_boundary() -> None:
    assert pat_start(STREAM) == 0
    assert pat_start(STREAM[PACKET:]) == 2 * PACKET
    assert pat_start(packet(0x100) * 5) is None
    assert pat_start(packet(0, start=False) + packet(0, start=True)) == PACKET  # a continuation


def test_a_packet_without_its_sync_byte_is_cut_out_and_sync_found_again() -> None:
    broken = STREAM[: 3 * PACKET] + b"\x00" * 50 + STREAM[3 * PACKET :]
    aligner = Aligner()
    out = aligner.feed(broken)
    assert out == STREAM[: 3 * PACKET]
    rest = aligner.feed(b"")  # the carry: 50 stray bytes, then whole packets again
    assert rest and rest == STREAM[3 * PACKET : 3 * PACKET + len(rest)]
    assert aligner.skipped == 50
