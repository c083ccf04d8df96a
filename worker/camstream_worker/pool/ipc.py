"""The two channels between the pool's parent and each engine process.

Who calls this: the parent's handle of an engine process (process.py) and the
engine process itself (child.py). Both ends are made before the child starts
(`channels`); the child inherits its ends as file descriptors (their numbers
are on its command line) and rebuilds them (`child_ends`).

The control pipe carries pickled tuples; a request carries a number and is
answered with the same number (`Requests` keeps the futures). The parent's
first message is the child's settings (`Settings`), before any request:

    parent → child   Settings, once, first
                     | (APPLY, n, specs, start_sequences) | (CLOSE, n)
                     | (SECRET, n, ok, value or the SecretError, whose class is the reason)
                     | (NOTE, StreamKey, reason, message): a refused SRT publisher
                     | (FENCE, n, StreamKey): stop publishing it, say where it ended
                     | (FOLLOW, n, StreamKey, answers or None): publish it, following on
    child → parent   (DONE, n) | (STATUS, StreamStatus) | (SNAPSHOT, [StreamStatus])
                     | (SECRET, n, namespace, SecretRef) | (RTMP, {counter: value})
                     | (FENCED, n, answers or None)

FENCE and FOLLOW are a handoff's fence (engine.py, outputs/hls/writer.py):
the answers map each writer of the stream (by its folder) to its last
number and the wall time that segment was cut, or None.

The connection socket (a Unix SOCK_SEQPACKET pair) passes RTMP connections:
the file descriptor itself (SCM_RIGHTS) and, in the same message, the time
the client connected (time.monotonic(), one clock for the whole system) and
the bytes the parent read after the handshake. It also passes SRT publishers: the
Unix socket the SRT listener relays a publisher's MPEG-TS bytes into (the
SRT socket itself lives in libsrt and cannot be passed), with the stream and
the peer. The first byte of a message says which (`_RTMP`, `_SRT`). A message is never empty, so
the parent's hang-up (an empty message) is told from a connection whose
descriptor the kernel dropped because the child had none left
(`DescriptorLost`).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing.connection
import socket
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

from camstream.spec import StreamKey
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.sources.policy import SourcePolicy

APPLY = "apply"
CLOSE = "close"
SECRET = "secret"
DONE = "done"
STATUS = "status"
SNAPSHOT = "snapshot"
RTMP = "rtmp"
NOTE = "note"
FENCE = "fence"
FOLLOW = "follow"
FENCED = "fenced"

MAX_RECEIVED = 1 << 17  # bytes read after the handshake; the front reads at most 64 KiB + a chunk
_CONNECTED_AT = struct.Struct(">d")
_RTMP = b"R"
_SRT = b"S"
MAX_SRT_HEADER = 1024  # "namespace/name peer": two DNS labels and an address


class DescriptorLost(OSError):
    """A connection arrived without its descriptor: this process is out of them."""


Pipe = multiprocessing.connection.Connection
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """What an engine process needs to start: the parent's first control message."""

    index: int
    hls_root: str
    log_level: int
    sources: SourcePolicy
    rtmp_limits: Limits
    recording_spool: str | None


def channels() -> tuple[tuple[Pipe, socket.socket], tuple[socket.socket, socket.socket]]:
    """(parent's ends, child's ends): the control pipe and the connection socket.

    The child's ends are plain sockets for the child to inherit (`child_ends`
    rebuilds them there). Made without multiprocessing's process machinery,
    so no resource tracker process is started for them.
    """
    parent_control, child_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (child_control, child_sock):
        end.set_inheritable(True)
    parent_pipe = multiprocessing.connection.Connection(parent_control.detach())
    return (parent_pipe, parent_sock), (child_control, child_sock)


def child_ends(control_fd: int, connections_fd: int) -> tuple[Pipe, socket.socket]:
    """In the child: the control pipe and the connection socket from inherited descriptors."""
    return multiprocessing.connection.Connection(control_fd), socket.socket(fileno=connections_fd)


def pass_connection(
    channel: socket.socket, sock: socket.socket, received: bytes, connected_at: float
) -> None:
    """Send an RTMP connection (after its handshake), when it connected and the bytes read since."""
    message = _RTMP + _CONNECTED_AT.pack(connected_at) + received
    socket.send_fds(channel, [message], [sock.fileno()])


def pass_publisher(channel: socket.socket, sock: socket.socket, key: StreamKey, peer: str) -> None:
    """Send an accepted SRT publisher's byte socket, for stream `key`."""
    socket.send_fds(
        channel, [_SRT + f"{key.namespace}/{key.name} {peer}".encode()], [sock.fileno()]
    )


@dataclass(frozen=True, slots=True)
class RtmpConnection:
    sock: socket.socket
    received: bytes
    connected_at: float


@dataclass(frozen=True, slots=True)
class SrtPublisher:
    sock: socket.socket
    key: StreamKey
    peer: str


def receive_connection(channel: socket.socket) -> RtmpConnection | SrtPublisher | None:
    """The next passed connection; None when the parent left.

    Raises BlockingIOError when nothing is waiting (the channel is non-blocking),
    DescriptorLost when a connection came without its descriptor.
    """
    data, fds, _, _ = socket.recv_fds(channel, 1 + _CONNECTED_AT.size + MAX_RECEIVED, 1)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None
    if not fds:
        raise DescriptorLost("a passed connection lost its descriptor (EMFILE?)")
    for extra in fds[1:]:
        socket.close(extra)
    connection = socket.socket(fileno=fds[0])
    kind, body = data[:1], data[1:]
    if kind == _SRT:
        name, _, peer = body.decode().partition(" ")
        namespace, _, stream = name.partition("/")
        return SrtPublisher(connection, StreamKey(namespace, stream), peer)
    connection.setblocking(False)
    (connected_at,) = _CONNECTED_AT.unpack_from(body)
    return RtmpConnection(connection, body[_CONNECTED_AT.size :], connected_at)


class Requests(Generic[T]):
    """Numbered requests over a pipe, each resolved by the answer with its number."""

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self._waiting: dict[int, asyncio.Future[T]] = {}

    def open(self) -> tuple[int, asyncio.Future[T]]:
        number = next(self._numbers)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        return number, future

    def answer(self, number: int, value: T) -> None:
        future = self._waiting.pop(number, None)
        if future is not None and not future.done():
            future.set_result(value)

    def answer_all(self, value: T) -> None:
        """The other end is gone: nobody will answer, so nobody should wait."""
        for number in list(self._waiting):
            self.answer(number, value)
