"""Chunk stream decoding: header types, extended timestamps, interleaving, limits.

The chunks here are built by hand (``_chunk``) so each header rule is pinned
byte for byte, independently of the module's own encoder.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.protocols.rtmp.chunks import (
    ChunkDecoder,
    ChunkError,
    RtmpMessage,
    encode_message,
)


def _basic(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


def _chunk(
    fmt: int,
    csid: int,
    payload: bytes,
    *,
    ts: int = 0,
    length: int = 0,
    type_id: int = 0,
    msid: int = 0,
    ext: int | None = None,
) -> bytes:
    """One chunk; ``ts`` is the 24-bit field, ``ext`` the extended timestamp if any."""
    out = _basic(fmt, csid)
    if fmt <= 2:
        out += ts.to_bytes(3, "big")
    if fmt <= 1:
        out += length.to_bytes(3, "big") + bytes((type_id,))
    if fmt == 0:
        out += struct.pack("<I", msid)
    if ext is not None:
        out += struct.pack(">I", ext)
    return out + payload


def _summary(messages: list[RtmpMessage]) -> list[tuple[int, int, int, int, bytes]]:
    return [(m.csid, m.type_id, m.stream_id, m.timestamp, m.payload) for m in messages]


def test_type0_single_chunk_message() -> None:
    dec = ChunkDecoder()
    out = dec.feed(_chunk(0, 4, b"abc", ts=1000, length=3, type_id=9, msid=1))
    assert _summary(out) == [(4, 9, 1, 1000, b"abc")]
    assert dec.buffered == 0


def test_message_split_over_type3_chunks() -> None:
    payload = bytes(range(256)) + bytes(44)  # 300 bytes: 128 + 128 + 44
    data = (
        _chunk(0, 6, payload[:128], ts=40, length=300, type_id=9, msid=1)
        + _chunk(3, 6, payload[128:256])
        + _chunk(3, 6, payload[256:])
    )
    assert _summary(ChunkDecoder().feed(data)) == [(6, 9, 1, 40, payload)]


def test_type1_type2_and_type3_new_message_timestamps() -> None:
    # Spec example 1 (5.3.2.1): type 0 at 1000, then type 2 delta 33, then type 3 twice.
    data = (
        _chunk(0, 3, b"a" * 32, ts=1000, length=32, type_id=8, msid=12345)
        + _chunk(2, 3, b"b" * 32, ts=33)
        + _chunk(3, 3, b"c" * 32)
        + _chunk(3, 3, b"d" * 32)
        # type 1 changes length and type, keeps the message stream id
        + _chunk(1, 3, b"e" * 5, ts=10, length=5, type_id=9)
    )
    out = _summary(ChunkDecoder().feed(data))
    assert [(m[3], m[1], m[2], len(m[4])) for m in out] == [
        (1000, 8, 12345, 32),
        (1033, 8, 12345, 32),
        (1066, 8, 12345, 32),
        (1099, 8, 12345, 32),
        (1109, 9, 12345, 5),
    ]


def test_type3_new_message_after_type0_reapplies_its_timestamp_field() -> None:
    # FFmpeg/librtmp semantics: a fmt 3 new message adds the previous timestamp field.
    data = _chunk(0, 4, b"x", ts=40, length=1, type_id=8, msid=1) + _chunk(3, 4, b"y")
    assert [m.timestamp for m in ChunkDecoder().feed(data)] == [40, 80]


def test_extended_timestamp_in_type0_and_its_type3_continuation() -> None:
    big = 0x12345678
    payload = b"p" * 200
    data = _chunk(0, 4, payload[:128], ts=0xFFFFFF, length=200, type_id=9, msid=1, ext=big)
    data += _chunk(3, 4, payload[128:], ext=big)  # continuation repeats the 4 bytes
    assert _summary(ChunkDecoder().feed(data)) == [(4, 9, 1, big, payload)]


def test_extended_delta_in_type1_then_type3_new_message() -> None:
    data = (
        _chunk(0, 4, b"a", ts=100, length=1, type_id=8, msid=1)
        + _chunk(1, 4, b"b", ts=0xFFFFFF, length=1, type_id=8, ext=0x01000000)
        + _chunk(3, 4, b"c", ext=0x01000000)  # new message: same extended delta again
    )
    assert [m.timestamp for m in ChunkDecoder().feed(data)] == [
        100,
        100 + 0x01000000,
        100 + 0x02000000,
    ]


def test_timestamps_wrap_modulo_2_32() -> None:
    data = _chunk(0, 4, b"a", ts=0xFFFFFF, length=1, type_id=8, msid=1, ext=0xFFFFFFF0)
    data += _chunk(2, 4, b"b", ts=0x20)
    assert [m.timestamp for m in ChunkDecoder().feed(data)] == [0xFFFFFFF0, 0x10]


def test_interleaved_chunk_streams() -> None:
    video = bytes(range(200))
    audio = b"A" * 150
    data = (
        _chunk(0, 6, video[:128], ts=0, length=200, type_id=9, msid=1)
        + _chunk(0, 4, audio[:128], ts=5, length=150, type_id=8, msid=1)
        + _chunk(3, 6, video[128:])
        + _chunk(3, 4, audio[128:])
    )
    out = _summary(ChunkDecoder().feed(data))
    assert out == [(6, 9, 1, 0, video), (4, 8, 1, 5, audio)]


def test_two_and_three_byte_chunk_stream_ids() -> None:
    data = _chunk(0, 100, b"x", length=1, type_id=8, msid=1) + _chunk(
        0, 1000, b"y", length=1, type_id=9, msid=1
    )
    assert [(m.csid, m.payload) for m in ChunkDecoder().feed(data)] == [(100, b"x"), (1000, b"y")]


def test_set_chunk_size_applies_to_the_very_next_chunk() -> None:
    payload = b"z" * 1000
    data = _chunk(0, 2, struct.pack(">I", 4096), length=4, type_id=1)
    data += _chunk(0, 6, payload, ts=7, length=1000, type_id=9, msid=1)  # one chunk at 4096
    dec = ChunkDecoder()
    out = dec.feed(data)
    assert dec.chunk_size == 4096
    assert [(m.type_id, m.payload) for m in out] == [(1, struct.pack(">I", 4096)), (9, payload)]
    # and it can shrink again, down to the minimum
    out = dec.feed(
        _chunk(0, 2, struct.pack(">I", 128), length=4, type_id=1)
        + _chunk(0, 6, payload[:128], length=135, type_id=9, msid=1)
        + _chunk(3, 6, b"abcdefg")
    )
    assert out[-1].payload == payload[:128] + b"abcdefg"


@pytest.mark.parametrize("size", [0, 1, 127, 0x7FFFFFFF])
def test_invalid_chunk_size_is_an_error(size: int) -> None:
    with pytest.raises(ChunkError, match="chunk size"):
        ChunkDecoder().feed(_chunk(0, 2, struct.pack(">I", size), length=4, type_id=1))


def test_abort_drops_the_partial_message() -> None:
    dec = ChunkDecoder()
    out = dec.feed(
        _chunk(0, 6, b"x" * 128, length=300, type_id=9, msid=1)
        + _chunk(0, 2, struct.pack(">I", 6), length=4, type_id=2)  # abort csid 6
        + _chunk(0, 6, b"fresh", length=5, type_id=9, msid=1)
    )
    assert [(m.type_id, m.payload) for m in out] == [(2, struct.pack(">I", 6)), (9, b"fresh")]


def test_oversized_message_length_is_refused_before_allocation() -> None:
    dec = ChunkDecoder(max_message_size=1000)
    with pytest.raises(ChunkError, match="exceeds"):
        dec.feed(_chunk(0, 6, b"", length=1001, type_id=9, msid=1))


def test_first_chunk_of_a_stream_must_be_type0() -> None:
    with pytest.raises(ChunkError, match="starts with a fmt 3"):
        ChunkDecoder().feed(b"\xc6abc")


def test_chunk_stream_count_is_capped() -> None:
    dec = ChunkDecoder(max_chunk_streams=3)
    data = b"".join(_chunk(0, csid, b"", length=0, type_id=8, msid=1) for csid in range(3, 7))
    with pytest.raises(ChunkError, match="chunk streams"):
        dec.feed(data)


def test_pending_bytes_across_chunk_streams_are_bounded() -> None:
    dec = ChunkDecoder(max_message_size=1000, max_pending_bytes=300)
    data = b"".join(
        _chunk(0, csid, b"q" * 128, length=1000, type_id=9, msid=1) for csid in range(3, 7)
    )
    with pytest.raises(ChunkError, match="unfinished"):
        dec.feed(data)


def test_zero_length_messages_are_counted_not_returned() -> None:
    dec = ChunkDecoder()
    # a fmt 0 empty message, then fmt 3 headers that each start another one
    out = dec.feed(_chunk(0, 3, b"", length=0, type_id=20) + bytes((0xC3,)) * 5)
    assert out == [] and dec.messages == 6 and dec.buffered == 0
    # the stream goes on as before
    out = dec.feed(_chunk(0, 3, b"abc", length=3, type_id=20))
    assert _summary(out) == [(3, 20, 0, 0, b"abc")] and dec.messages == 7


def _stream() -> tuple[bytes, list[tuple[int, int, int, int, bytes]]]:
    """A realistic byte stream with its expected messages."""
    msgs = [
        (3, 20, 0, 0, b"connect" * 30),
        (2, 1, 0, 0, struct.pack(">I", 300)),
        (4, 8, 1, 0, b"a" * 9),
        (6, 9, 1, 0xFFFFFF + 5, bytes(range(256)) * 3),
        (4, 8, 1, 23, b"b" * 700),
    ]
    data = b""
    size = 128
    for csid, type_id, msid, ts, payload in msgs:
        data += encode_message(csid, type_id, msid, ts, payload, size)
        if type_id == 1:
            size = 300
    return data, msgs


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_of_the_input_gives_the_same_messages(cuts: list[int]) -> None:
    data, expected = _stream()
    points = sorted({c % (len(data) + 1) for c in cuts})
    dec = ChunkDecoder()
    out: list[RtmpMessage] = []
    prev = 0
    for point in [*points, len(data)]:
        out += dec.feed(data[prev:point])
        prev = point
    assert _summary(out) == expected
    assert dec.buffered == 0


def test_byte_by_byte_feed() -> None:
    data, expected = _stream()
    dec = ChunkDecoder()
    out: list[RtmpMessage] = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert _summary(out) == expected


def test_encoder_uses_extended_timestamps_and_continuations() -> None:
    raw = encode_message(3, 20, 0, 0x01000000, b"x" * 130, 128)
    # basic(1) + header(11) + ext(4) + 128 + basic(1) + ext(4) + 2
    assert len(raw) == 1 + 11 + 4 + 128 + 1 + 4 + 2
    assert raw[1:4] == b"\xff\xff\xff"


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_chunk_errors(raw: bytes) -> None:
    try:
        ChunkDecoder(max_message_size=4096).feed(raw)
    except ChunkError:
        pass


def test_a_new_header_mid_message_drops_the_unfinished_one() -> None:
    dec = ChunkDecoder()
    out = dec.feed(
        _chunk(0, 6, b"x" * 128, length=300, type_id=9, msid=1)  # unfinished
        + _chunk(0, 6, b"one", ts=5, length=3, type_id=9, msid=1)  # a complete new message
        + _chunk(3, 6, b"two")  # fmt 3: a new message like the last, not a continuation
    )
    assert [(m.timestamp, m.payload) for m in out] == [(5, b"one"), (10, b"two")]


@pytest.mark.parametrize("ext", [None, 0x01020304])
def test_another_chunk_stream_cutting_into_a_run_of_continuations(ext: int | None) -> None:
    payload = bytes(range(200)) * 3  # 600 bytes: 5 chunks of 128 (last 88)
    ts = 0xFFFFFF if ext is not None else 7
    cont = [_chunk(3, 6, payload[i : i + 128], ext=ext) for i in range(128, 600, 128)]
    data = (
        _chunk(0, 6, payload[:128], ts=ts, length=600, type_id=9, msid=1, ext=ext)
        + cont[0]
        + cont[1]
        + _chunk(0, 4, b"audio", ts=3, length=5, type_id=8, msid=1)
        + cont[2]
        + cont[3]
    )
    out = ChunkDecoder().feed(data)
    assert [(m.csid, m.payload) for m in out] == [(4, b"audio"), (6, payload)]
    assert out[1].timestamp == (ext if ext is not None else 7)
