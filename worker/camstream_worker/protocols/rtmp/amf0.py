"""AMF0 encode/decode: the value format of RTMP commands and metadata.

Called through ``messages`` by the RTMP connection and front to read the commands a publisher
sends (connect, createStream, publish...) and the ``onMetaData`` it attaches,
and to encode the replies (``_result``, ``onStatus``). Pure: bytes in, Python
values out, no I/O.

Mapping (decode → encode round-trips for these):

    number 0x00        ↔ float (ints encode as numbers too)
    boolean 0x01       ↔ bool
    string 0x02 / long string 0x0C / XML 0x0F → str
    object 0x03 / ECMA array 0x08 / typed object 0x10 → dict (EcmaArray on encode)
    null 0x05 / undefined 0x06 / unsupported 0x0D → None
    strict array 0x0A  ↔ list
    date 0x0B          → float (milliseconds since the epoch; time zone dropped)
    reference 0x07     → the earlier object it points at

Input is untrusted (it comes off the network): every length is checked
against the bytes present, nesting depth is capped, and any malformed input
raises ``Amf0Error`` (a ValueError) rather than something unexpected.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["Amf0Error", "EcmaArray", "decode", "decode_all", "encode", "encode_all"]

# Deeper nesting than this is never legitimate in RTMP and would let a peer
# drive the decoder into Python's recursion limit.
MAX_DEPTH = 32

_NUMBER = 0x00
_BOOLEAN = 0x01
_STRING = 0x02
_OBJECT = 0x03
_NULL = 0x05
_UNDEFINED = 0x06
_REFERENCE = 0x07
_ECMA_ARRAY = 0x08
_OBJECT_END = 0x09
_STRICT_ARRAY = 0x0A
_DATE = 0x0B
_LONG_STRING = 0x0C
_UNSUPPORTED = 0x0D
_XML = 0x0F
_TYPED_OBJECT = 0x10
_AVMPLUS = 0x11

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Amf0Error(ValueError):
    """Malformed or unsupported AMF0 data."""


class EcmaArray(dict[str, object]):
    """A dict that encodes as an AMF0 ECMA array (what onMetaData uses)."""


class _Decoder:
    """One decoding pass over a buffer; remembers objects for references."""

    __slots__ = ("data", "refs")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data
        self.refs: list[object] = []

    def _need(self, pos: int, size: int) -> None:
        if pos + size > len(self.data):
            raise Amf0Error(f"truncated AMF0 data at offset {pos}")

    def _utf8(self, pos: int, size: int) -> str:
        self._need(pos, size)
        return bytes(self.data[pos : pos + size]).decode("utf-8", errors="replace")

    def _pairs(self, pos: int, into: dict[str, object], depth: int) -> int:
        while True:
            self._need(pos, 2)
            (klen,) = _U16.unpack_from(self.data, pos)
            pos += 2
            if klen == 0:
                self._need(pos, 1)
                if self.data[pos] != _OBJECT_END:
                    raise Amf0Error("object key of length 0 not followed by object end")
                return pos + 1
            key = self._utf8(pos, klen)
            pos += klen
            into[key], pos = self.value(pos, depth + 1)

    def value(self, pos: int, depth: int = 0) -> tuple[object, int]:
        if depth > MAX_DEPTH:
            raise Amf0Error("AMF0 nesting too deep")
        self._need(pos, 1)
        marker = self.data[pos]
        pos += 1
        if marker == _NUMBER:
            self._need(pos, 8)
            return _DOUBLE.unpack_from(self.data, pos)[0], pos + 8
        if marker == _BOOLEAN:
            self._need(pos, 1)
            return self.data[pos] != 0, pos + 1
        if marker == _STRING:
            self._need(pos, 2)
            (size,) = _U16.unpack_from(self.data, pos)
            return self._utf8(pos + 2, size), pos + 2 + size
        if marker in (_LONG_STRING, _XML):
            self._need(pos, 4)
            (size,) = _U32.unpack_from(self.data, pos)
            return self._utf8(pos + 4, size), pos + 4 + size
        if marker in (_OBJECT, _ECMA_ARRAY, _TYPED_OBJECT):
            if marker == _ECMA_ARRAY:
                self._need(pos, 4)
                pos += 4  # the count is advisory; the end marker is what counts
            elif marker == _TYPED_OBJECT:
                self._need(pos, 2)
                (size,) = _U16.unpack_from(self.data, pos)
                self._need(pos + 2, size)
                pos += 2 + size
            obj: dict[str, object] = EcmaArray() if marker == _ECMA_ARRAY else {}
            self.refs.append(obj)
            return obj, self._pairs(pos, obj, depth)
        if marker in (_NULL, _UNDEFINED, _UNSUPPORTED):
            return None, pos
        if marker == _REFERENCE:
            self._need(pos, 2)
            (index,) = _U16.unpack_from(self.data, pos)
            if index >= len(self.refs):
                raise Amf0Error(f"AMF0 reference {index} out of range")
            return self.refs[index], pos + 2
        if marker == _STRICT_ARRAY:
            self._need(pos, 4)
            (count,) = _U32.unpack_from(self.data, pos)
            pos += 4
            # Each value takes at least one byte: a huge count with little data is a lie.
            self._need(pos, count)
            items: list[object] = []
            self.refs.append(items)
            for _ in range(count):
                item, pos = self.value(pos, depth + 1)
                items.append(item)
            return items, pos
        if marker == _DATE:
            self._need(pos, 10)
            return _DOUBLE.unpack_from(self.data, pos)[0], pos + 10
        if marker == _AVMPLUS:
            raise Amf0Error("AMF3 values inside AMF0 are not supported")
        raise Amf0Error(f"unknown AMF0 marker 0x{marker:02x}")


def decode(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[object, int]:
    """Decode one value at ``offset``; return it and the offset after it."""
    return _Decoder(data).value(offset)


def decode_all(data: bytes | bytearray | memoryview) -> list[object]:
    """Decode every value in ``data`` (a command or data message body)."""
    decoder = _Decoder(data)
    values: list[object] = []
    pos = 0
    while pos < len(data):
        value, pos = decoder.value(pos)
        values.append(value)
    return values


def _encode_into(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Amf0Error("AMF0 nesting too deep")
    if value is None:
        out.append(_NULL)
    elif isinstance(value, bool):  # before int: bool is an int subclass
        out += bytes((_BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(_NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(_LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(_STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out.append(_ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(_OBJECT)
        for key, item in value.items():
            raw_key = str(key).encode("utf-8")
            if not raw_key or len(raw_key) > 0xFFFF:
                raise Amf0Error("AMF0 object keys must be 1..65535 bytes")
            out += _U16.pack(len(raw_key))
            out += raw_key
            _encode_into(out, item, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, list | tuple):
        out.append(_STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    else:
        raise Amf0Error(f"cannot encode {type(value).__name__} as AMF0")


def encode(value: object) -> bytes:
    """Encode one value."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def encode_all(values: Iterable[object]) -> bytes:
    """Encode a sequence of values back to back (a command body)."""
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)
