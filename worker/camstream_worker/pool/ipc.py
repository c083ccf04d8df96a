"""The two channels between the pool's parent and each engine process.

Who calls this: the parent's handle of an engine process (process.py) and the
engine process itself (child.py). Both ends are made before the child starts
(`channels`) and passed to it by multiprocessing.

The control pipe carries pickled tuples; a request carries a number and is
answered with the same number (`Requests` keeps the futures):

    parent → child   (APPLY, n, specs, start_sequences) | (CLOSE, n)
                     | (SECRET, n, ok, value or the SecretError, whose class is the reason)
    child → parent   (DONE, n) | (STATUS, StreamStatus) | (SNAPSHOT, [StreamStatus])
                     | (SECRET, n, namespace, SecretRef) | (RTMP, {counter: value})

The connection socket (a Unix SOCK_SEQPACKET pair) passes RTMP connections:
the file descriptor itself (SCM_RIGHTS) and, in the same message, the time
the client connected (time.monotonic(), one clock for the whole system) and
the bytes the parent read after the handshake. A message is never empty, so
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
from multiprocessing.context import SpawnContext
from typing import Generic, TypeVar

APPLY = "apply"
CLOSE = "close"
SECRET = "secret"
DONE = "done"
STATUS = "status"
SNAPSHOT = "snapshot"
RTMP = "rtmp"

MAX_RECEIVED = 1 << 17  # bytes read after the handshake; the front reads at most 64 KiB + a chunk
_CONNECTED_AT = struct.Struct(">d")


class DescriptorLost(OSError):
    """A connection arrived without its descriptor: this process is out of them."""


Pipe = multiprocessing.connection.Connection
T = TypeVar("T")


def channels(
    context: SpawnContext,
) -> tuple[tuple[Pipe, socket.socket], tuple[Pipe, socket.socket]]:
    """(parent's ends, child's ends): the control pipe and the connection socket."""
    parent_pipe, child_pipe = context.Pipe(duplex=True)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return (parent_pipe, parent_sock), (child_pipe, child_sock)


def pass_connection(
    channel: socket.socket, sock: socket.socket, received: bytes, connected_at: float
) -> None:
    """Send an RTMP connection (after its handshake), when it connected and the bytes read since."""
    socket.send_fds(channel, [_CONNECTED_AT.pack(connected_at) + received], [sock.fileno()])


def receive_connection(channel: socket.socket) -> tuple[socket.socket, bytes, float] | None:
    """The next passed connection, its bytes and when it connected; None when the parent left.

    Raises BlockingIOError when nothing is waiting (the channel is non-blocking),
    DescriptorLost when a connection came without its descriptor.
    """
    data, fds, _, _ = socket.recv_fds(channel, _CONNECTED_AT.size + MAX_RECEIVED, 1)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None
    if not fds:
        raise DescriptorLost("a passed connection lost its descriptor (EMFILE?)")
    for extra in fds[1:]:
        socket.close(extra)
    connection = socket.socket(fileno=fds[0])
    connection.setblocking(False)
    (connected_at,) = _CONNECTED_AT.unpack_from(data)
    return connection, data[_CONNECTED_AT.size :], connected_at


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
