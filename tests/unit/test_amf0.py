"""AMF0 encode/decode: known bytes, round trips, and hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.protocols.rtmp import amf0
from camstream_worker.protocols.rtmp.amf0 import Amf0Error, EcmaArray


def test_connect_command_bytes_match_the_wire_format() -> None:
    body = amf0.encode_all(["connect", 1, {"app": "live"}])
    expected = (
        b"\x02\x00\x07connect"
        + b"\x00"
        + struct.pack(">d", 1.0)
        + b"\x03\x00\x03app\x02\x00\x04live\x00\x00\x09"
    )
    assert body == expected
    assert amf0.decode_all(body) == ["connect", 1.0, {"app": "live"}]


def test_scalars() -> None:
    assert amf0.encode(None) == b"\x05"
    assert amf0.encode(True) == b"\x01\x01"
    assert amf0.encode(False) == b"\x01\x00"
    assert amf0.decode(b"\x06") == (None, 1)  # undefined
    assert amf0.decode(b"\x0d") == (None, 1)  # unsupported
    assert amf0.decode(b"\x0b" + struct.pack(">d", 1.5e12) + b"\x00\x00") == (1.5e12, 11)


def test_ecma_array_is_what_onmetadata_uses() -> None:
    meta = EcmaArray(width=320.0, stereo=False, encoder="Lavf")
    raw = amf0.encode(meta)
    assert raw[0] == 0x08
    decoded, end = amf0.decode(raw)
    assert end == len(raw)
    assert isinstance(decoded, EcmaArray)
    assert decoded == meta


def test_ecma_array_count_is_advisory() -> None:
    raw = b"\x08" + struct.pack(">I", 99) + b"\x00\x01a\x05\x00\x00\x09"
    assert amf0.decode(raw)[0] == {"a": None}


def test_long_string_strict_array_typed_object_and_reference() -> None:
    long_text = "x" * 70000
    raw = amf0.encode(long_text)
    assert raw[0] == 0x0C
    assert amf0.decode(raw)[0] == long_text
    assert amf0.decode_all(amf0.encode([1, "a", None]))[0] == [1.0, "a", None]
    typed = b"\x10\x00\x03Cls" + b"\x00\x01k\x01\x01\x00\x00\x09"
    assert amf0.decode(typed)[0] == {"k": True}
    # a reference to object 0 decodes to that same object
    obj = b"\x03\x00\x01k\x00" + struct.pack(">d", 2.0) + b"\x00\x00\x09"
    first, second = amf0.decode_all(obj + b"\x07\x00\x00")
    assert first == {"k": 2.0} and second is first


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert amf0.decode(b"\x02\x00\x02\xff\xfe")[0] == "\ufffd\ufffd"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00",  # short number
        b"\x02\x00\x05ab",  # string longer than the data
        b"\x03\x00\x01k",  # object cut after a key
        b"\x03\x00\x00\x05",  # empty key not followed by object end
        b"\x0a\xff\xff\xff\xff",  # strict array claiming 4 billion items
        b"\x07\x00\x03",  # reference to nothing
        b"\x11\x01",  # AMF3 switch
        b"\x42",  # unknown marker
    ],
)
def test_malformed_input_raises_amf0_error(raw: bytes) -> None:
    with pytest.raises(Amf0Error):
        amf0.decode_all(raw) if raw else amf0.decode(raw)


def test_nesting_bomb_is_refused() -> None:
    raw = b"\x0a\x00\x00\x00\x01" * 100 + b"\x05"
    with pytest.raises(Amf0Error, match="deep"):
        amf0.decode(raw)


def test_unencodable_value() -> None:
    with pytest.raises(Amf0Error):
        amf0.encode(object())


_keys = st.text(min_size=1, max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_keys, children, max_size=4)
        | st.dictionaries(_keys, children, max_size=4).map(EcmaArray)
    ),
    max_leaves=12,
)


@given(st.lists(_values, max_size=5))
def test_round_trip(values: list[object]) -> None:
    assert amf0.decode_all(amf0.encode_all(values)) == values


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_amf0_error(raw: bytes) -> None:
    try:
        amf0.decode_all(raw)
    except Amf0Error:
        pass
