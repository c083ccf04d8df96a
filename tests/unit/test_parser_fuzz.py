"""Bounded-time fuzzing of every parser that reads what a peer sends (issue 8).

The RTMP handshake, chunk stream, AMF0 values, aggregate messages and FLV
tags come off the network from strangers; playlists come from another worker
(``cluster/desired.next_sequence_from_playlist``) or from the disk a previous
run left (``writer._next_sequence_on_disk``). For each, hypothesis feeds
random and structured-then-mutated input and holds it to:

- no exception but the module's own error class (the connection catches
  those; anything else would be an "internal error" and a bug);
- bounded memory: what the chunk decoder holds never exceeds its caps;
- bounded time: every example has a deadline (a hang or a blow-up fails it).

Each test has a fixed ``max_examples`` and ``deadline`` so the suite's time
stays predictable (a few seconds in all); the linear-time claim itself is
measured by bench/rtmp_bench.py, not by timing here.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camstream_worker.cluster.desired import next_sequence_from_playlist
from camstream_worker.outputs.hls.writer import _next_sequence_on_disk
from camstream_worker.protocols.rtmp import amf0, handshake, messages
from camstream_worker.protocols.rtmp.chunks import ChunkDecoder, ChunkError, encode_message
from camstream_worker.protocols.rtmp.flv import FlvError, FlvTagParser, parse_audio_specific_config

FUZZ = settings(
    max_examples=150,
    deadline=2000,  # ms per example, generous for a loaded 2-core machine
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # tmp_path: one file, rewritten each example
    ],
)


def mutated(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    """`data` with some bytes overwritten and the tail possibly cut off."""
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out[: max(0, len(out) - cut)])


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)

# -- RTMP chunk stream

_MESSAGE = st.tuples(
    st.sampled_from([2, 3, 4, 5, 6, 63, 64, 319, 320, 65599]),  # 1-, 2- and 3-byte basic headers
    st.sampled_from([1, 2, 3, 4, 5, 8, 9, 18, 20, 22]),
    st.integers(0, 3),
    st.one_of(st.integers(0, 0xFFFFFE), st.integers(0xFFFFFF, 0xFFFFFFFF)),  # extended too
    st.binary(max_size=600),
)


def _stream_of(messages_: list[tuple[int, int, int, int, bytes]], chunk_size: int) -> bytes:
    data = b""
    for csid, type_id, msid, ts, payload in messages_:
        if type_id == 1:
            payload = struct.pack(">I", chunk_size)  # a Set Chunk Size the encoder follows
        size = 128 if type_id == 1 else chunk_size
        data += encode_message(csid, type_id, msid, ts, payload, size)
    return data


@FUZZ
@given(
    st.lists(_MESSAGE, max_size=12),
    st.sampled_from([128, 129, 4096]),
    _EDITS,
    st.integers(0, 40),
    st.lists(st.integers(1, 700), max_size=8),
    st.sampled_from([None, 1, 3, 64]),
)
def test_chunk_decoder_on_mutated_streams(
    messages_: list[tuple[int, int, int, int, bytes]],
    chunk_size: int,
    edits: list[tuple[int, int]],
    cut: int,
    splits: list[int],
    budget: int | None,
) -> None:
    data = mutated(_stream_of(messages_, chunk_size), edits, cut)
    decoder = ChunkDecoder(max_message_size=2048, max_pending_bytes=3000, max_chunk_streams=8)
    position = 0
    try:
        for size in [*splits, len(data)]:
            decoder.push(data[position : position + size])
            position += size
            while True:
                decoder.decode(budget)
                assert decoder.pending <= 3000
                if not decoder.backlog:
                    break
        assert decoder.buffered <= len(data)
    except ChunkError:
        pass


@FUZZ
@given(st.lists(_MESSAGE, max_size=12), st.sampled_from([128, 300]), st.integers(1, 8))
def test_a_budget_changes_when_messages_come_not_which(
    messages_: list[tuple[int, int, int, int, bytes]], chunk_size: int, budget: int
) -> None:
    data = _stream_of(messages_, chunk_size)

    def decode(step: int | None) -> tuple[list[object], bool]:
        decoder = ChunkDecoder()
        decoder.push(data)
        out: list[object] = []
        try:
            out += decoder.decode(step)
            while decoder.backlog:
                out += decoder.decode(step)
        except ChunkError:
            return out, True
        return out, False

    whole, whole_failed = decode(None)
    sliced, sliced_failed = decode(budget)
    assert sliced_failed == whole_failed
    if not whole_failed:
        assert sliced == whole


@FUZZ
@given(st.binary(max_size=4096))
def test_chunk_decoder_on_random_bytes(raw: bytes) -> None:
    try:
        ChunkDecoder(max_message_size=4096).feed(raw)
    except ChunkError:
        pass


# -- the handshake


@FUZZ
@given(st.lists(st.binary(max_size=2000), max_size=5))
def test_server_handshake_on_random_bytes(parts: list[bytes]) -> None:
    shake = handshake.ServerHandshake()
    try:
        for part in parts:
            reply = shake.feed(part)
            assert len(reply) in (0, handshake.SERVER_HELLO_SIZE)
    except handshake.HandshakeError:
        pass


# -- AMF0 and the messages built on it

_AMF = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.lists(_AMF, max_size=4), _EDITS, st.integers(0, 10))
def test_amf0_on_mutated_values(
    values: list[object], edits: list[tuple[int, int]], cut: int
) -> None:
    data = mutated(amf0.encode_all(values), edits, cut)
    try:
        amf0.decode_all(data)
    except amf0.Amf0Error:
        pass


@FUZZ
@given(st.binary(max_size=2048))
def test_amf0_on_random_bytes(raw: bytes) -> None:
    try:
        amf0.decode_all(raw)
    except amf0.Amf0Error:
        pass


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([messages.AMF0_COMMAND, messages.AMF3_COMMAND]))
def test_connect_app_and_command_values(raw: bytes, type_id: int) -> None:
    message = messages.chunks.RtmpMessage(3, type_id, 0, 0, raw)
    try:
        messages.command_values(message)
    except amf0.Amf0Error:
        pass
    try:
        messages.connect_app(message)
    except ValueError:  # Amf0Error, or "the first command is not connect"
        pass


@FUZZ
@given(st.binary(max_size=2048), st.integers(0, 0xFFFFFFFF))
def test_aggregate_messages(raw: bytes, timestamp: int) -> None:
    try:
        for _, ts, body in messages.aggregate_tags(timestamp, raw):
            assert 0 <= ts <= 0xFFFFFFFF and len(body) <= len(raw)
    except messages.AggregateError:
        pass


# -- FLV tags

_TAG = st.tuples(
    st.sampled_from([8, 9]),
    st.integers(0, 0xFFFFFFFF),
    st.one_of(
        st.binary(max_size=64),
        # plausible headers: AVC/HEVC/enhanced video, AAC/enhanced audio, then anything
        st.tuples(
            st.sampled_from([b"\x17\x00", b"\x17\x01", b"\x27\x01", b"\x1c\x00", b"\x90hvc1",
                             b"\x91avc1", b"\xaf\x00", b"\xaf\x01", b"\x90mp4a", b"\x57"]),
            st.binary(max_size=64),
        ).map(lambda parts: parts[0] + parts[1]),
    ),
)  # fmt: skip


@FUZZ
@given(st.lists(_TAG, max_size=30))
def test_flv_tag_parser(tags: list[tuple[int, int, bytes]]) -> None:
    parser = FlvTagParser()
    for tag_type, ts, body in tags:
        try:
            parser.parse(tag_type, ts, body)
        except FlvError:
            parser = FlvTagParser()  # the publish would end here; start another


@FUZZ
@given(st.binary(max_size=16))
def test_audio_specific_config(raw: bytes) -> None:
    try:
        rate, channels = parse_audio_specific_config(raw)
    except FlvError:
        return
    assert rate >= 0 and (channels is None or 0 <= channels <= 15)


# -- playlists another worker, or an earlier run, wrote

_LINE = st.one_of(
    st.sampled_from(["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXTINF:2.000,",
                     "seg1.ts", "#EXT-X-DISCONTINUITY", "", "#EXT-X-MEDIA-SEQUENCE:"]),
    st.integers(-(10**30), 10**30).map(lambda n: f"#EXT-X-MEDIA-SEQUENCE:{n}"),
    st.text(max_size=40).map(lambda t: f"#EXT-X-MEDIA-SEQUENCE:{t}"),
    st.text(max_size=40),
)  # fmt: skip


@FUZZ
@given(st.lists(_LINE, max_size=40))
def test_next_sequence_from_playlist(lines: list[str]) -> None:
    result = next_sequence_from_playlist("\n".join(lines))
    assert result is None or isinstance(result, int)


@settings(FUZZ, max_examples=60)
@given(st.lists(_LINE, max_size=40), st.binary(max_size=64))
def test_next_sequence_on_disk(tmp_path: Path, lines: list[str], junk: bytes) -> None:
    """A playlist an earlier run left, maybe cut short or not UTF-8 at all."""
    path = tmp_path / "index.m3u8"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + junk)
    result = _next_sequence_on_disk(path)
    assert result is None or isinstance(result, int)
