"""A scripted RTMP client for attacks and protocol corners no real publisher reaches.

Imported by the bad-input suite (tests/security): floods of chunks, empty
messages and pings, oversized messages, idle connections, wrong keys, keys in
odd fields, and a publisher that replays an FLV file's tags as it likes (one
that never sends another keyframe). Blocking sockets, so each attacker is a
plain thread; every socket binds to a loopback source address (127.0.0.x,
so per-address caps can be exercised from one machine) and connects to
loopback only.

The chunk encoder and the decoder for the server's replies are camstream's
own (protocols/rtmp): real publishers (FFmpeg, GStreamer) check the wire
format elsewhere (tests/media/test_rtmp_server.py).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from camstream_worker.protocols.rtmp import amf0
from camstream_worker.protocols.rtmp.chunks import ChunkDecoder, RtmpMessage, encode_message

LOOPBACK = "127.0.0.1"
AUDIO, VIDEO, DATA, COMMAND, USER_CONTROL, SET_CHUNK_SIZE = 8, 9, 18, 20, 4, 1


class Closed(ConnectionError):
    """The server closed the connection."""


class RtmpClient:
    def __init__(
        self,
        port: int,
        *,
        source: str = LOOPBACK,
        timeout: float = 10.0,
        receive_buffer: int | None = None,
    ) -> None:
        """`receive_buffer`: SO_RCVBUF, set before connecting (a client that reads little)."""
        if not source.startswith("127."):
            raise ValueError("attack only from loopback")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((source, 0))
        self.sock.connect((LOOPBACK, port))
        self.chunk_size = 128
        self._decoder = ChunkDecoder()
        self.inbox: list[RtmpMessage] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- sending

    def raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Closed("closed by the server") from exc

    def handshake(self) -> None:
        self.raw(b"\x03" + bytes(8) + os.urandom(1528))
        s0s1s2 = self._read_exactly(1 + 2 * 1536)
        self.raw(s0s1s2[1:1537])  # C2 echoes S1

    def send(self, csid: int, type_id: int, msid: int, ts: int, payload: bytes) -> None:
        self.raw(encode_message(csid, type_id, msid, ts, payload, self.chunk_size))

    def command(self, *values: object, msid: int = 0) -> None:
        self.send(3, COMMAND, msid, 0, amf0.encode_all(values))

    def set_chunk_size(self, size: int) -> None:
        self.send(2, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size))
        self.chunk_size = size

    def connect(self, app: str) -> None:
        self.command("connect", 1.0, {"app": app, "tcUrl": f"rtmp://{LOOPBACK}/{app}"})

    def publish(self, app: str, name: str, *, within: float = 15.0) -> str:
        """connect, createStream, publish: the onStatus code the server answers with.

        "closed" if the server hung up without one.
        """
        self.connect(app)
        self.command("createStream", 2.0, None)
        self.command("publish", 3.0, None, name, "live", msid=1)
        try:
            status = self.expect_command("onStatus", within)
        except (Closed, TimeoutError, OSError):
            return "closed"
        info = status[3] if len(status) > 3 else None
        return str(info.get("code")) if isinstance(info, dict) else "?"

    def ping(self, stamp: int) -> None:
        self.send(2, USER_CONTROL, 0, 0, struct.pack(">HI", 6, stamp & 0xFFFFFFFF))

    def tag(self, tag_type: int, ts: int, body: bytes) -> None:
        """An FLV tag as an RTMP message on the published stream (message stream 1)."""
        self.send(6 if tag_type == VIDEO else 4, tag_type, 1, ts, body)

    # -- receiving

    def expect_command(self, name: str, within: float = 10.0) -> list[object]:
        deadline = time.monotonic() + within
        while True:
            for message in self.inbox:
                if message.type_id == COMMAND:
                    values = amf0.decode_all(message.payload)
                    if values and values[0] == name:
                        self.inbox.remove(message)
                        return values
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} within {within} s")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise Closed("closed by the server")
            self.inbox += self._decoder.feed(data)

    def closed_within(self, seconds: float) -> bool:
        """True once the server has closed the connection (EOF or reset) within `seconds`.

        What the server sent meanwhile is read and dropped; `seconds=0` looks once.
        """
        deadline = time.monotonic() + seconds
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                pass
            if time.monotonic() >= deadline:
                return False

    def unread(self) -> int:
        """Bytes the server sent that this client has not read."""
        import array
        import fcntl
        import termios

        count = array.array("i", [0])
        fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, count)
        return count[0]

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise Closed("closed by the server during the handshake")
            data += chunk
        return data


def flv_tags(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp ms, body) of each audio/video/data tag of an FLV file."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
        if len(body) == size:
            yield tag_type, ts, body


def is_keyframe(tag_type: int, body: bytes) -> bool:
    return tag_type == VIDEO and bool(body) and body[0] >> 4 == 1 and body[1:2] == b"\x01"


def is_sequence_header(tag_type: int, body: bytes) -> bool:
    return tag_type in (AUDIO, VIDEO) and len(body) > 1 and body[1] == 0
