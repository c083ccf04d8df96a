"""The RTMP media path's fast paths return what the general paths return.

`ChunkDecoder.decode` takes a message whose chunks are all present back to
back in one step (`_whole`), and `FlvTagParser.parse` takes coded H.264 and
raw AAC frames inline (bench/README.md, "Part 3, the RTMP path"). Both are
checked here against the general code on random input: the decoder against
the messages that were encoded, fed whole (fast path) and byte by byte (the
fast path never sees a whole message then), interleaved or not; the parser
against one whose fast path is switched off.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.protocols.rtmp.chunks import (
    ChunkDecoder,
    ChunkTooLarge,
    RtmpMessage,
    encode_message,
)
from camstream_worker.protocols.rtmp.flv import FlvError, FlvTagParser, MediaPacket, TrackConfig

_messages = st.lists(
    st.tuples(
        st.sampled_from([4, 6, 7, 63, 64, 300]),  # 1-, 2- and 3-byte basic headers
        st.sampled_from([8, 9, 18]),
        st.integers(0, 0xFFFFFFFF),  # extended timestamps included
        # Sizes about the chunk sizes: one chunk, two, many, a short last one.
        st.sampled_from(
            [0, 1, 127, 128, 129, 200, 256, 257, 383, 1000, 4096, 4097, 5000, 9000]
        ).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    ),
    min_size=1,
    max_size=12,
)


def _decode_all(
    decoder: ChunkDecoder, data: bytes, read: int, budget: int | None
) -> list[RtmpMessage]:
    out: list[RtmpMessage] = []
    for offset in range(0, len(data), read):
        decoder.push(data[offset : offset + read])
        while True:
            out += decoder.decode(budget)
            if not decoder.backlog:
                break
    return out


@settings(max_examples=150, deadline=None)
@given(
    _messages,
    st.sampled_from([128, 129, 256, 4096]),
    st.integers(1, 5000),
    st.sampled_from([None, 1, 3, 256]),
)
def test_decoded_messages_are_the_encoded_ones_whatever_the_reads(
    sent: list[tuple[int, int, int, bytes]], chunk_size: int, read: int, budget: int | None
) -> None:
    data = bytearray(encode_message(2, 1, 0, 0, chunk_size.to_bytes(4, "big"), 128))
    for csid, type_id, ts, payload in sent:
        data += encode_message(csid, type_id, 1, ts, payload, chunk_size)
    expected = [
        RtmpMessage(csid, type_id, 1, ts, payload)
        for csid, type_id, ts, payload in sent
        if payload  # empty messages are counted, not returned
    ]
    whole = _decode_all(ChunkDecoder(), bytes(data), len(data), budget)
    in_reads = _decode_all(ChunkDecoder(), bytes(data), read, budget)
    byte_by_byte = _decode_all(ChunkDecoder(), bytes(data), 1, None)
    assert whole[1:] == in_reads[1:] == byte_by_byte[1:] == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=129, max_size=3000), st.binary(min_size=129, max_size=3000))
def test_interleaved_messages_leave_the_fast_path_and_still_decode(a: bytes, b: bytes) -> None:
    def chunks_of(csid: int, payload: bytes) -> list[bytes]:
        raw = encode_message(csid, 9, 1, 40, payload, 128)
        first = 12 + 128
        return [raw[:first]] + [raw[i : i + 129] for i in range(first, len(raw), 129)]

    ca, cb = chunks_of(4, a), chunks_of(5, b)
    data = b""
    for k in range(max(len(ca), len(cb))):
        data += (ca[k] if k < len(ca) else b"") + (cb[k] if k < len(cb) else b"")
    got = ChunkDecoder().feed(data)
    assert sorted(got, key=lambda m: m.csid) == [
        RtmpMessage(4, 9, 1, 40, a),
        RtmpMessage(5, 9, 1, 40, b),
    ]


@pytest.mark.parametrize("read", [1, 10_000])
def test_a_whole_message_counts_against_the_held_bytes_cap_as_before(read: int) -> None:
    """Half a message held on one chunk stream, then a whole one on another:
    over the cap together, refused, whether it came at once (fast path) or not."""
    half = encode_message(5, 9, 1, 0, bytes(400), 128)[: 12 + 128]  # 128 of 400 held
    whole = encode_message(4, 9, 1, 0, bytes(300), 128)  # three chunks, 300 bytes
    decoder = ChunkDecoder(max_message_size=1000, max_pending_bytes=128 + 299)
    with pytest.raises(ChunkTooLarge, match="held in unfinished messages"):
        _decode_all(decoder, half + whole, read, None)
    decoder = ChunkDecoder(max_message_size=1000, max_pending_bytes=128 + 300)
    assert _decode_all(decoder, half + whole, read, None) == [RtmpMessage(4, 9, 1, 0, bytes(300))]


class _GeneralParser(FlvTagParser):
    """The parser with its inline fast path switched off."""

    def _ready(self) -> None:
        self._avc = self._aac = False


_AVC = bytes([0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF])
_HEVC = bytes([0x1C, 0, 0, 0, 0, 1, 2, 3])
_AAC = bytes([0xAF, 0, 0x12, 0x10])
_MP3 = bytes([0x2F, 1, 2, 3])

_tags = st.lists(
    st.tuples(
        st.sampled_from([8, 9, 9, 18]),
        st.integers(0, 0xFFFFFFFF),
        st.one_of(
            st.sampled_from([_AVC, _HEVC, _AAC, _MP3, b""]),
            st.binary(min_size=1, max_size=12).map(lambda b: b"\xaf\x01" + b),
            st.binary(min_size=0, max_size=12).map(lambda b: b"\xaf" + b),
            st.tuples(st.integers(0, 255), st.integers(0, 3), st.binary(max_size=12)).map(
                lambda t: bytes([t[0], t[1]]) + t[2]
            ),
            st.tuples(st.sampled_from([0x17, 0x27, 0x57, 0x37]), st.binary(max_size=12)).map(
                lambda t: bytes([t[0], 1]) + t[1]
            ),
        ),
    ),
    max_size=30,
)


def _outcome(parser: FlvTagParser, tag_type: int, ts: int, body: bytes) -> object:
    try:
        return parser.parse(tag_type, ts, body)
    except FlvError as exc:
        return ("error", str(exc))


@settings(max_examples=300, deadline=None)
@given(_tags)
def test_flv_fast_path_returns_what_the_general_path_returns(
    tags: list[tuple[int, int, bytes]],
) -> None:
    fast, general = FlvTagParser(), _GeneralParser()
    for tag_type, ts, body in tags:
        got = _outcome(fast, tag_type, ts, body)
        assert got == _outcome(general, tag_type, ts, body)
        assert isinstance(got, MediaPacket | TrackConfig | tuple) or got is None
        assert fast.dropped_audio == general.dropped_audio
