"""The plain RTMP handshake (no digest, no encryption), both sides, without I/O.

    client                                server
    C0 (version 3) + C1 (1536 bytes) ──▶
                                      ◀── S0 + S1 (time 0, zero version = plain) + S2 (C1 echoed)
    C2 (S1 echoed)                   ──▶
    chunk stream (chunks.py) ...

Who calls this: the RTMP connection (``servers/rtmp/connection.py``) and the
RTMP front (``servers/rtmp/front.py``) answer clients with
``ServerHandshake``; the relay (``servers/rtmp/relay.py``) opens a session to
the owning worker with ``client_hello`` and ``client_ack``. Nobody checks C2
or S2: nothing hinges on them, and FFmpeg, OBS and librtmp all accept a plain
server.
"""

from __future__ import annotations

import os

VERSION = 3
SIZE = 1536  # of C1, C2, S1, S2
SERVER_HELLO_SIZE = 1 + 2 * SIZE  # S0 + S1 + S2
_ENCRYPTED_VERSIONS = (6, 8)  # RTMPE


class HandshakeError(ValueError):
    """The peer did not start a plain RTMP handshake."""


def _random_part() -> bytes:
    # Time 0 and a zero version field (a plain handshake, no digest), then random.
    return b"\x00" * 8 + os.urandom(SIZE - 8)


class ServerHandshake:
    """The server side: feed it what arrives, send what `feed` returns.

    After C2, `done` is True and `rest` holds the bytes that followed it (the
    start of the chunk stream).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._answered = False
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        """Take the client's next bytes; return what to send back (maybe nothing)."""
        if self.done:
            raise HandshakeError("the handshake is over")
        buffer = self._buffer
        buffer += data
        reply = b""
        if not self._answered:
            if buffer and buffer[0] != VERSION:
                # Checked on the first byte: an HTTP request or a scanner is refused at once.
                extra = " (RTMPE, not supported)" if buffer[0] in _ENCRYPTED_VERSIONS else ""
                raise HandshakeError(f"bad handshake version {buffer[0]}{extra}")
            if len(buffer) < 1 + SIZE:
                return b""
            c1 = bytes(buffer[1 : 1 + SIZE])
            del buffer[: 1 + SIZE]
            reply = bytes((VERSION,)) + _random_part() + c1  # S2 echoes C1
            self._answered = True
        if len(buffer) >= SIZE:
            self.rest = bytes(buffer[SIZE:])
            self._buffer = bytearray()
            self.done = True
        return reply


def client_hello() -> bytes:
    """C0 + C1: what a client sends first."""
    return bytes((VERSION,)) + _random_part()


def client_ack(server_hello: bytes) -> bytes:
    """C2 for the server's S0 + S1 + S2 (SERVER_HELLO_SIZE bytes): S1 echoed."""
    if len(server_hello) != SERVER_HELLO_SIZE or server_hello[0] != VERSION:
        raise HandshakeError("the server's handshake is not plain RTMP")
    return server_hello[1 : 1 + SIZE]
