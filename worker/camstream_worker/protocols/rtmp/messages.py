"""RTMP messages a publishing session uses: type ids, the server's replies, and bodies read apart.

Who calls this: the RTMP connection (``servers/rtmp/connection.py``) to
dispatch what a publisher sends and to encode its answers, and the RTMP front
(``servers/rtmp/front.py``) to find a client's ``connect``. Pure: messages
(``chunks.RtmpMessage``) and values in, bytes and values out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from camstream_worker.protocols.rtmp import amf0, chunks

# Message type ids (RTMP 1.0, sections 5.4 and 7.1)
SET_CHUNK_SIZE = chunks.SET_CHUNK_SIZE
ABORT = chunks.ABORT
ACK = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
AMF3_DATA = 15
AMF3_COMMAND = 17
AMF0_DATA = 18
AMF0_COMMAND = 20
AGGREGATE = 22

# User control events
STREAM_BEGIN = 0
PING_REQUEST = 6
PING_RESPONSE = 7

# Chunk stream ids for what a server sends
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STATUS = 5

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def control(type_id: int, payload: bytes, chunk_size: int) -> bytes:
    """A protocol control or user control message, on the control chunk stream."""
    return chunks.encode_message(CSID_CONTROL, type_id, 0, 0, payload, chunk_size)


def u32(value: int) -> bytes:
    """The 4-byte big-endian body of most control messages."""
    return _U32.pack(value & 0xFFFFFFFF)


def user_control(event: int, data: bytes, chunk_size: int) -> bytes:
    return control(USER_CONTROL, _U16.pack(event) + data, chunk_size)


def command(stream_id: int, values: list[object], chunk_size: int) -> bytes:
    """An AMF0 command (``_result``, ...) on the command chunk stream."""
    payload = amf0.encode_all(values)
    return chunks.encode_message(CSID_COMMAND, AMF0_COMMAND, stream_id, 0, payload, chunk_size)


def on_status(stream_id: int, level: str, code: str, description: str, chunk_size: int) -> bytes:
    """An ``onStatus`` (NetStream.Publish.Start, ...) on the status chunk stream."""
    info = {"level": level, "code": code, "description": description}
    payload = amf0.encode_all(["onStatus", 0.0, None, info])
    return chunks.encode_message(CSID_STATUS, AMF0_COMMAND, stream_id, 0, payload, chunk_size)


def connect_replies(
    txid: float, *, window: int, chunk_size: int, new_chunk_size: int
) -> bytes:
    """A server's answer to ``connect``: window, peer bandwidth, its chunk size, ``_result``.

    `chunk_size` is the one in force before; the ``_result`` goes out in
    `new_chunk_size`, which this answer announces. The worker's RTMP
    connections and the ingest edge answer the same way.
    """
    acks = u32(window)
    return b"".join(
        (
            control(WINDOW_ACK_SIZE, acks, chunk_size),
            control(SET_PEER_BANDWIDTH, acks + b"\x02", chunk_size),  # dynamic
            control(SET_CHUNK_SIZE, u32(new_chunk_size), chunk_size),
            command(
                0,
                [
                    "_result",
                    txid,
                    {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                    {
                        "level": "status",
                        "code": "NetConnection.Connect.Success",
                        "description": "Connection succeeded.",
                        "objectEncoding": 0.0,
                    },
                ],
                new_chunk_size,
            ),
        )
    )


def command_values(message: chunks.RtmpMessage) -> list[object]:
    """The values of an AMF0 or AMF3 command (an AMF3 command is a format byte + AMF0)."""
    payload = message.payload
    if message.type_id == AMF3_COMMAND and payload[:1] == b"\x00":
        payload = payload[1:]
    return amf0.decode_all(payload)


def data_values(message: chunks.RtmpMessage) -> list[object]:
    """The values of a data message (``@setDataFrame``, ``onMetaData``, ...)."""
    payload = message.payload[1:] if message.type_id == AMF3_DATA else message.payload
    return amf0.decode_all(payload)


def ping_request(payload: bytes) -> bytes | None:
    """The timestamp of a user control ping request, or None for other events."""
    if len(payload) >= 6 and _U16.unpack_from(payload)[0] == PING_REQUEST:
        return payload[2:6]
    return None


def window_ack_size(payload: bytes) -> int | None:
    return _U32.unpack_from(payload)[0] if len(payload) >= 4 else None


def connect_props(message: chunks.RtmpMessage) -> dict[str, object] | None:
    """The properties of a ``connect`` command (empty if it has none); None for
    any other message.

    Raises ValueError when the first command is not ``connect`` (a client must
    connect before anything else).
    """
    if message.type_id != AMF0_COMMAND:
        return None
    values = amf0.decode_all(message.payload)
    if values and values[0] == "connect" and len(values) > 2:
        props = values[2]
        return {str(k): v for k, v in props.items()} if isinstance(props, dict) else {}
    raise ValueError("the first command is not connect")


def connect_app(message: chunks.RtmpMessage) -> str | None:
    """The app of a ``connect`` command; None for any other message (see connect_props)."""
    props = connect_props(message)
    return None if props is None else str(props.get("app", ""))


class AggregateError(ValueError):
    """An aggregate message that does not hold whole FLV tags."""


def aggregate_tags(timestamp: int, payload: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp, body) of each FLV tag in an aggregate message.

    The tags' own times are relative to the first one; the message's
    timestamp says where the first one is.
    """
    pos, end, base = 0, len(payload), None
    while pos + 11 <= end:
        tag_type = payload[pos] & 0x1F
        size = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        tag_ts = int.from_bytes(payload[pos + 4 : pos + 7], "big") | (payload[pos + 7] << 24)
        pos += 11
        if pos + size > end:
            raise AggregateError("truncated aggregate message")
        base = tag_ts if base is None else base
        body = payload[pos : pos + size]
        pos += size + 4  # the tag's trailing PreviousTagSize
        yield tag_type, (timestamp + tag_ts - base) & 0xFFFFFFFF, body
