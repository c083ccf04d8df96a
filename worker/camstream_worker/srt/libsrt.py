"""A ctypes binding to libsrt (Debian's libsrt1.5): the few calls camstream uses.

Who calls this: the SRT listener (servers/srt/listener.py), which serves every
publisher of a worker from one UDP port and one thread, and the SRT pull
source (sources/srt.py), which calls an encoder in listener mode. PyAV's
FFmpeg has no SRT protocol, and Debian's FFmpeg would need a process per
stream; libsrt itself multiplexes any number of connections over one UDP
socket and waits on all of them with its own epoll, so one thread serves them
all. Why ctypes and not a compiled extension: nothing to build, and the calls
are few and coarse (one per received message: up to 1316 bytes, seven MPEG-TS
packets).

Every call that can fail raises `SrtError` with libsrt's own message (never a
passphrase: libsrt never puts one into an error). Sockets are plain ints
(SRTSOCKET); this module keeps no state but the loaded library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

# The names Debian's packages give the library (libsrt1.5-gnutls, libsrt1.5-openssl).
LIBRARY_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5")
# A path tried first: the worker image keeps its copy in the venv (Dockerfile.worker).
LIBRARY_VARIABLE = "CAMSTREAM_LIBSRT"

# SRT_SOCKOPT (srt.h)
SRTO_SNDSYN = 1
SRTO_RCVSYN = 2
SRTO_FC = 4
SRTO_RCVBUF = 6
SRTO_UDP_RCVBUF = 9
SRTO_RCVTIMEO = 14
SRTO_STATE = 17
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_CONNTIMEO = 36
SRTO_RCVLATENCY = 43
SRTO_STREAMID = 46
SRTO_PEERIDLETIMEO = 55

# SRT_SOCKSTATUS
SRTS_CONNECTED = 5
SRTS_BROKEN = 6
SRTS_CLOSED = 8
SRTS_NONEXIST = 9

# SRT_EPOLL_OPT
EPOLL_IN = 0x1
EPOLL_ERR = 0x8

# Error codes (SRT_ERRNO) the callers tell apart.
EASYNCRCV = 6002  # non-blocking receive: nothing to read now
ETIMEOUT = 6003  # blocking receive: SRTO_RCVTIMEO passed
ECONNLOST = 2001
ENOCONN = 2002

# Reject reasons a listener may give (srt.h's SRT_REJX_*, HTTP codes + 1000):
# the caller sees them (ffmpeg prints "Connection rejected: ..." with the number).
REJX_BAD_REQUEST = 1400
REJX_UNAUTHORIZED = 1401
REJX_OVERLOAD = 1402
REJX_FORBIDDEN = 1403
REJX_NOTFOUND = 1404
REJX_BAD_MODE = 1405
REJX_CONFLICT = 1409
REJX_DOWN = 1503
# HTTP's 202 in SRT's predefined range: a report taken (protocols/srt/vouch.py), no connection.
REJX_NOTED = 1202

LOG_CRIT = 2  # syslog's level numbers, as srt_setloglevel takes them

# SRT's limits on a passphrase (srt.h: 10 to 79 characters).
PASSPHRASE_MIN = 10
PASSPHRASE_MAX = 79
MAX_STREAMID = 512  # libsrt's own cap on SRTO_STREAMID
LIVE_PAYLOAD = 1316  # one live-mode message: 7 MPEG-TS packets
MAX_PAYLOAD = 1456  # the largest message a peer may choose (SRTO_PAYLOADSIZE's cap)


class SrtError(OSError):
    """A libsrt call failed; `code` is libsrt's SRT_ERRNO."""

    def __init__(self, call: str, code: int, message: str) -> None:
        super().__init__(f"srt {call}: {message} ({code})")
        self.code = code


class _EpollEvent(ctypes.Structure):
    _fields_ = (("fd", ctypes.c_int), ("events", ctypes.c_int))


# int cb(void* opaque, SRTSOCKET ns, int hsversion, const sockaddr* peer, const char* streamid)
LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


@functools.cache
def library() -> ctypes.CDLL:
    """libsrt, loaded and started once per process; SrtError when it is not installed."""
    names = [os.environ.get(LIBRARY_VARIABLE, ""), *LIBRARY_NAMES]
    names.append(ctypes.util.find_library("srt") or "")
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise SrtError("load", -1, f"libsrt is not installed (tried {', '.join(LIBRARY_NAMES)})")
    _declare(lib)
    lib.srt_setloglevel(LOG_CRIT)  # libsrt would print every stranger's failed handshake
    if lib.srt_startup() < 0:
        raise SrtError("startup", -1, "srt_startup failed")
    return lib


def available() -> bool:
    try:
        library()
    except SrtError:
        return False
    return True


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    signatures: dict[str, tuple[object, list[object]]] = {
        "srt_startup": (c_int, []),
        "srt_setloglevel": (None, [c_int]),
        "srt_getsockname": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
        "srt_create_socket": (c_int, []),
        "srt_bind": (c_int, [c_int, c_void_p, c_int]),
        "srt_listen": (c_int, [c_int, c_int]),
        "srt_accept": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
        "srt_connect": (c_int, [c_int, c_void_p, c_int]),
        "srt_close": (c_int, [c_int]),
        "srt_listen_callback": (c_int, [c_int, LISTEN_CALLBACK, c_void_p]),
        "srt_setsockflag": (c_int, [c_int, c_int, c_void_p, c_int]),
        "srt_getsockflag": (c_int, [c_int, c_int, c_void_p, ctypes.POINTER(c_int)]),
        "srt_getsockstate": (c_int, [c_int]),
        "srt_getpeername": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
        "srt_recvmsg": (c_int, [c_int, c_void_p, c_int]),
        "srt_sendmsg": (c_int, [c_int, c_void_p, c_int, c_int, c_int]),
        "srt_getlasterror": (c_int, [ctypes.POINTER(c_int)]),
        "srt_getlasterror_str": (c_char_p, []),
        "srt_clearlasterror": (None, []),
        "srt_getrejectreason": (c_int, [c_int]),
        "srt_setrejectreason": (c_int, [c_int, c_int]),
        "srt_rejectreason_str": (c_char_p, [c_int]),
        "srt_epoll_create": (c_int, []),
        "srt_epoll_add_usock": (c_int, [c_int, c_int, ctypes.POINTER(c_int)]),
        "srt_epoll_remove_usock": (c_int, [c_int, c_int]),
        "srt_epoll_uwait": (c_int, [c_int, ctypes.POINTER(_EpollEvent), c_int, ctypes.c_int64]),
        "srt_epoll_release": (c_int, [c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def _error(call: str) -> SrtError:
    lib = library()
    code = lib.srt_getlasterror(None)
    message = (lib.srt_getlasterror_str() or b"").decode(errors="replace")
    lib.srt_clearlasterror()
    return SrtError(call, code, message)


def _check(call: str, result: int) -> int:
    if result < 0:
        raise _error(call)
    return result


# -- addresses


def sockaddr(host: str, port: int) -> bytes:
    """A struct sockaddr_in/in6 for a literal address (no name resolution here)."""
    address = ipaddress.ip_address(host)
    if address.version == 4:
        return (
            struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + address.packed + bytes(8)
        )
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, 0)
        + address.packed
        + struct.pack("=I", 0)
    )


def peer_of(raw: bytes) -> str:
    """ "host:port" of a struct sockaddr (IPv6 hosts in brackets)."""
    (family,) = struct.unpack_from("=H", raw)
    (port,) = struct.unpack_from("!H", raw, 2)
    if family == socket.AF_INET:
        return f"{ipaddress.IPv4Address(raw[4:8])}:{port}"
    if family == socket.AF_INET6:
        return f"[{ipaddress.IPv6Address(raw[8:24])}]:{port}"
    return f"?:{port}"


def peer_from_pointer(pointer: int | None) -> str:
    if not pointer:
        return "?"
    return peer_of(ctypes.string_at(pointer, 28))


# -- sockets


def create() -> int:
    return _check("create_socket", library().srt_create_socket())


def close(sock: int) -> None:
    library().srt_close(sock)


def set_int(sock: int, option: int, value: int) -> None:
    raw = ctypes.c_int(value)
    _check("setsockflag", library().srt_setsockflag(sock, option, ctypes.byref(raw), 4))


def set_bool(sock: int, option: int, value: bool) -> None:
    # SRT's boolean options take a C bool (one byte) or an int; int works for all.
    set_int(sock, option, int(value))


def set_string(sock: int, option: int, value: str) -> None:
    raw = value.encode()
    _check("setsockflag", library().srt_setsockflag(sock, option, raw, len(raw)))


def get_int(sock: int, option: int) -> int:
    raw = ctypes.c_int(0)
    length = ctypes.c_int(4)
    _check(
        "getsockflag",
        library().srt_getsockflag(sock, option, ctypes.byref(raw), ctypes.byref(length)),
    )
    return raw.value


def get_string(sock: int, option: int, size: int = MAX_STREAMID + 1) -> str:
    buffer = ctypes.create_string_buffer(size)
    length = ctypes.c_int(size)
    _check("getsockflag", library().srt_getsockflag(sock, option, buffer, ctypes.byref(length)))
    return buffer.raw[: length.value].decode(errors="replace")


def state(sock: int) -> int:
    return int(library().srt_getsockstate(sock))


def bind(sock: int, host: str, port: int) -> None:
    address = sockaddr(host, port)
    _check("bind", library().srt_bind(sock, address, len(address)))


def bound_port(sock: int) -> int:
    raw = ctypes.create_string_buffer(28)
    length = ctypes.c_int(28)
    _check("getsockname", library().srt_getsockname(sock, raw, ctypes.byref(length)))
    (port,) = struct.unpack_from("!H", raw.raw, 2)
    return int(port)


def listen(sock: int, backlog: int) -> None:
    _check("listen", library().srt_listen(sock, backlog))


def on_listen(sock: int, callback: Callable[[int, int, int | None, bytes | None], int]) -> object:
    """Install the listen callback; keep the returned object alive as long as the socket.

    `callback(new_socket, hs_version, peer_pointer, stream_id)` runs in
    libsrt's receiver thread before the handshake completes: it may set the
    new socket's passphrase and latency, and returns 0 to go on or -1 to
    reject (after `set_reject_reason`).
    """
    hook = LISTEN_CALLBACK(lambda _opaque, ns, hs, peer, sid: callback(ns, hs, peer, sid))
    _check("listen_callback", library().srt_listen_callback(sock, hook, None))
    return hook


def set_reject_reason(sock: int, reason: int) -> None:
    library().srt_setrejectreason(sock, reason)


def reject_reason(sock: int) -> int:
    return int(library().srt_getrejectreason(sock))


def reject_reason_text(reason: int) -> str:
    if reason >= 1000:
        return f"rejected by the listener ({reason})"
    return (library().srt_rejectreason_str(reason) or b"").decode(errors="replace")


def accept(sock: int) -> tuple[int, str] | None:
    """The next accepted socket and its peer, or None when none is waiting."""
    raw = ctypes.create_string_buffer(28)
    length = ctypes.c_int(28)
    accepted = library().srt_accept(sock, raw, ctypes.byref(length))
    if accepted < 0:
        error = _error("accept")
        if error.code in (EASYNCRCV, 6001):  # EASYNCRCV / EASYNCFAIL-ish: nothing waiting
            return None
        raise error
    return accepted, peer_of(raw.raw)


def connect(sock: int, host: str, port: int) -> None:
    """Connect as caller; a rejection raises SrtError with the reject reason's text."""
    address = sockaddr(host, port)
    if library().srt_connect(sock, address, len(address)) < 0:
        error = _error("connect")
        reason = reject_reason(sock)
        if reason:
            raise SrtError("connect", error.code, reject_reason_text(reason)) from error
        raise error


@dataclass(slots=True)
class Received:
    """What one receive call gave: bytes, nothing yet, or the end."""

    data: bytes = b""
    would_block: bool = False
    closed: bool = False


def receive(sock: int, buffer: ctypes.Array[ctypes.c_char]) -> Received:
    count = library().srt_recvmsg(sock, buffer, len(buffer))
    if count > 0:
        return Received(data=buffer.raw[:count])
    if count == 0:
        return Received(closed=True)
    error = _error("recvmsg")
    if error.code in (EASYNCRCV, ETIMEOUT):
        return Received(would_block=True)
    return Received(closed=True)


def send(sock: int, data: bytes) -> int:
    return _check("sendmsg", library().srt_sendmsg(sock, data, len(data), -1, 0))


class Scratch:
    """One bytearray that many messages are received into, end to end, without a copy each.

    `receive_into` and `send_from` take its address: one libsrt call per
    message (live mode moves one message per call) and no Python object per
    message, where `receive` makes a bytes and a `Received` for each one."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self._view = (ctypes.c_char * size).from_buffer(self.data)  # pins `data`'s size
        self.address = ctypes.addressof(self._view)


def receive_into(sock: int, scratch: Scratch, offset: int) -> int:
    """Receive one message at `offset` of `scratch`: its size, 0 when none is waiting
    (non-blocking), -1 when the connection is over (closed, broken or lost)."""
    room = len(scratch.data) - offset
    if room < MAX_PAYLOAD:
        raise ValueError(f"scratch has {room} bytes free, a message takes up to {MAX_PAYLOAD}")
    lib = library()
    count = int(lib.srt_recvmsg(sock, scratch.address + offset, room))
    if count > 0:
        return count
    if count == 0:
        return -1
    code = lib.srt_getlasterror(None)
    lib.srt_clearlasterror()
    return 0 if code in (EASYNCRCV, ETIMEOUT) else -1


def send_from(sock: int, address: int, size: int) -> int:
    """Send one message of `size` bytes at `address` (a pinned buffer's, see Scratch)."""
    return _check("sendmsg", library().srt_sendmsg(sock, address, size, -1, 0))


def receive_buffer() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(LIVE_PAYLOAD * 2)


# -- epoll


class Epoll:
    """libsrt's epoll over SRT sockets: one wait for every connection."""

    def __init__(self, capacity: int = 256) -> None:
        self._id = _check("epoll_create", library().srt_epoll_create())
        self._events = (_EpollEvent * capacity)()

    def add(self, sock: int, events: int = EPOLL_IN | EPOLL_ERR) -> None:
        flags = ctypes.c_int(events)
        _check(
            "epoll_add_usock", library().srt_epoll_add_usock(self._id, sock, ctypes.byref(flags))
        )

    def remove(self, sock: int) -> None:
        library().srt_epoll_remove_usock(self._id, sock)

    def wait(self, timeout_ms: int) -> list[tuple[int, int]]:
        count = library().srt_epoll_uwait(self._id, self._events, len(self._events), timeout_ms)
        if count <= 0:
            library().srt_clearlasterror()  # a timeout is an "error" too
            return []
        return [(self._events[i].fd, self._events[i].events) for i in range(count)]

    def release(self) -> None:
        library().srt_epoll_release(self._id)
