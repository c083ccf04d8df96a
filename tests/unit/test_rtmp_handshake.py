"""The plain RTMP handshake (protocols/rtmp/handshake.py), both sides, byte for byte."""

from __future__ import annotations

import re

import pytest

from camstream_worker.protocols.rtmp import handshake


def test_server_answers_c1_and_hands_on_what_follows_c2() -> None:
    client = handshake.client_hello()
    assert len(client) == 1 + handshake.SIZE and client[0] == handshake.VERSION
    server = handshake.ServerHandshake()
    assert server.feed(client[:100]) == b""  # C1 not complete yet: nothing to say
    hello = server.feed(client[100:])
    assert len(hello) == handshake.SERVER_HELLO_SIZE
    assert hello[0] == handshake.VERSION
    assert hello[1 + 4 : 1 + 8] == b"\x00" * 4  # zero version field: a plain handshake
    assert hello[1 + handshake.SIZE :] == client[1:]  # S2 echoes C1
    c2 = handshake.client_ack(hello)
    assert c2 == hello[1 : 1 + handshake.SIZE]  # C2 echoes S1
    assert server.feed(c2[:-1]) == b"" and not server.done
    assert server.feed(c2[-1:] + b"chunk stream") == b""
    assert server.done and server.rest == b"chunk stream"


def test_server_handshake_in_one_read() -> None:
    server = handshake.ServerHandshake()
    data = handshake.client_hello() + bytes(handshake.SIZE) + b"\x03rest"
    assert len(server.feed(data)) == handshake.SERVER_HELLO_SIZE
    assert server.done and server.rest == b"\x03rest"


@pytest.mark.parametrize(
    ("first", "message"),
    [(b"G", "bad handshake version 71"), (b"\x06", "(RTMPE, not supported)")],
)
def test_anything_but_plain_rtmp_is_refused_at_the_first_byte(first: bytes, message: str) -> None:
    with pytest.raises(handshake.HandshakeError, match=re.escape(message)):
        handshake.ServerHandshake().feed(first)


def test_client_refuses_a_server_that_is_not_plain_rtmp() -> None:
    with pytest.raises(handshake.HandshakeError):
        handshake.client_ack(b"\x06" + bytes(2 * handshake.SIZE))
