"""SRT as a source: a camera pushes to the worker's SRT port, or the worker calls an encoder.

Who calls this: kinds.py makes one per `protocol: srt` stream: `SrtPushSource`
without a url, `SrtPullSource` with one (srt://host:port, the encoder in SRT
listener mode). The supervisor runs either once per session.

Both carry MPEG-TS, which PyAV demuxes from bytes (`av.open` on a file-like
object: PyAV's FFmpeg has no SRT of its own) in a thread of the session's
own, as rtsp.py's sessions run, through the same `remux_input` loop
(demux.py), so HLS, recording and the rest see an SRT camera as any other.

- Push: the SRT listener (servers/srt/listener.py, in the pool's parent
  process or in this process) accepts a publisher once its passphrase is
  right, and delivers its bytes as a Unix stream socket (`admit_socket`,
  through the engine). A newer publisher replaces the current one, as for
  RTMP: a camera reconnecting after a network cut must not wait for its
  half-dead connection to time out.
- Pull: the worker is the SRT caller (libsrt, blocking, with a receive
  timeout so the session sees `stopping`); the encoder's address is checked
  against the worker's deny-list first (egress.py) and the passphrase comes
  from the stream's Secret at each session. A rejected passphrase is
  AuthenticationFailed (the stream says so); any other failure to connect is
  the uniform SourceUnreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

import av

from camstream.spec import SecretRef, StreamSpec
from camstream_worker.errors import (
    AuthenticationFailed,
    SecretError,
    SourceEnded,
    SourceUnreachable,
)
from camstream_worker.sources.base import Context, PacketSink, run_in_own_thread
from camstream_worker.sources.demux import remux_input
from camstream_worker.srt import libsrt

log = logging.getLogger(__name__)

POLL = 0.25  # seconds between looks at `stopping` while a read waits
# Seconds without a byte before a delivered publisher is ended: the SRT
# listener drops a silent one at its own idle timeout (limits.py, 10 s), but
# an edge's TCP leg (servers/srt/edge_leg.py) has nobody between it and this
# read when the edge's host vanishes without closing it.
PUBLISHER_IDLE = 10.0
CONNECT_TIMEOUT_MS = 3000
# MPEG-TS carries its codec parameters in-band: a second is enough to find them.
# Not `fflags nobuffer`: it throws away what the probe read (that second,
# with the first keyframe in it), so the first segment waited for the third
# keyframe instead of the second, a GOP more on every publish, handoff and
# failover (a SIGKILL's failover measured 3.3 s from the edge's call to the
# first segment, against 1.1 s for RTMP).
_DEMUX_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}
_REJECTED_PASSPHRASE = (10, 11)  # SRT_REJ_BADSECRET, SRT_REJ_UNSECURE


class _SocketReader(io.RawIOBase):
    """A delivered publisher's bytes as the file PyAV reads; empty at the end or when stopping."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self._sock = sock
        self._stopping = stopping
        self._idle = False  # ended for silence: every later read is the end too
        sock.settimeout(POLL)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        quiet_since = time.monotonic()
        while not self._stopping.is_set() and not self._idle:
            try:
                return self._sock.recv_into(buffer)
            except TimeoutError:
                if time.monotonic() - quiet_since >= PUBLISHER_IDLE:
                    log.info("srt publisher sent nothing for %g s: ended", PUBLISHER_IDLE)
                    self._idle = True
                continue
            except OSError:
                return 0
        return 0


class _SrtReader(io.RawIOBase):
    """A caller's SRT socket as the file PyAV reads; whole messages are kept until taken."""

    def __init__(self, sock: int, stopping: threading.Event) -> None:
        self._sock = sock
        self._stopping = stopping
        self._buffer = libsrt.receive_buffer()
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._left:
            if self._stopping.is_set():
                return 0
            got = libsrt.receive(self._sock, self._buffer)
            if got.closed:
                return 0
            self._left = got.data
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def _open_mpegts(reader: io.RawIOBase) -> av.container.InputContainer:
    container = av.open(
        io.BufferedReader(reader, 64 * 1024), "r", format="mpegts", options=dict(_DEMUX_OPTIONS)
    )
    assert isinstance(container, av.container.InputContainer)
    return container


def takes_publishers(spec: StreamSpec) -> bool:
    """An SRT stream the camera pushes to (no url: the worker does not call it)."""
    return spec.enabled and spec.source.protocol == "srt" and spec.source.url is None


def passphrase_problem(passphrase: str) -> str | None:
    """SRT's own rule for a passphrase, in words that never quote it."""
    if not libsrt.PASSPHRASE_MIN <= len(passphrase) <= libsrt.PASSPHRASE_MAX:
        return (
            f"the SRT passphrase must be {libsrt.PASSPHRASE_MIN} to "
            f"{libsrt.PASSPHRASE_MAX} characters (it has {len(passphrase)})"
        )
    return None


async def _passphrase(context: Context, namespace: str, ref: SecretRef | None) -> str | None:
    """The stream's passphrase from its Secret; SecretError (Failed, clear) when unusable."""
    if ref is None:
        return None
    passphrase = await context.secrets.get(namespace, ref)
    problem = passphrase_problem(passphrase)
    if problem is not None:
        raise SecretError(f"secret {ref.name!r} key {ref.key!r}: {problem}")
    return passphrase


def make_source(spec: StreamSpec, context: Context) -> SrtPushSource | SrtPullSource:
    """With a url the worker calls the encoder; without, the camera pushes to us."""
    if spec.source.url is None:
        return SrtPushSource(spec, context)
    return SrtPullSource(spec, context)


class SrtPushSource:
    # The camera decides when it comes: no opening deadline, quick retries.
    pushed = True

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        self._passphrase = spec.source.srt.passphrase
        self._namespace = spec.key.namespace
        self._context = context
        self._prefix = context.log_prefix
        self._waiting: socket.socket | None = None  # delivered, not yet read
        self._current: socket.socket | None = None
        self._arrived = asyncio.Event()

    def admit_socket(self, sock: socket.socket, peer: str) -> None:
        """A publisher the listener accepted (right passphrase): read it next.

        In the event loop's thread. A newer publisher replaces the current one:
        shutting the current socket down ends its session, and the next session
        takes this one.
        """
        if self._waiting is not None:
            self._waiting.close()
        self._waiting = sock
        if self._current is not None:
            with contextlib.suppress(OSError):
                self._current.shutdown(socket.SHUT_RDWR)
        log.info("%ssrt publisher %s connected", self._prefix, peer)
        self._arrived.set()

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        # Resolved now so a missing passphrase shows as Failed, not as a silent wait.
        await _passphrase(self._context, self._namespace, self._passphrase)
        while self._waiting is None:
            if stopping.is_set():
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), POLL)
        sock, self._waiting, self._current = self._waiting, None, self._waiting
        try:
            reader = _SocketReader(sock, stopping)
            await run_in_own_thread(
                functools.partial(
                    remux_input,
                    functools.partial(_open_mpegts, reader),
                    sink,
                    stopping,
                    log_prefix=self._prefix,
                ),
                name=f"srt {self._prefix.strip()}",
            )
        except (SourceUnreachable, SourceEnded) as exc:
            # The publisher left (before its stream could be opened, or after): as for RTMP.
            raise SourceEnded("the camera stopped publishing") from exc
        finally:
            self._current = None
            sock.close()
        if not stopping.is_set():
            raise SourceEnded("the camera stopped publishing")


class SrtPullSource:
    pushed = False

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        source = spec.source
        assert source.url is not None  # kinds.py makes a pull source only with a url
        parts = urlsplit(source.url)
        assert parts.hostname is not None and parts.port is not None  # spec.py checked
        self._host, self._port = parts.hostname, parts.port
        self._stream_id = (parse_qs(parts.query).get("streamid") or [""])[0]
        self._options = source.srt
        self._namespace = spec.key.namespace
        self._context = context

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        address = await self._context.egress.address_for(self._host, self._port)
        passphrase = await _passphrase(self._context, self._namespace, self._options.passphrase)
        prefix = self._context.log_prefix

        def session() -> None:
            sock = self._connect(address, passphrase, prefix)
            try:
                remux_input(
                    functools.partial(_open_mpegts, _SrtReader(sock, stopping)),
                    sink,
                    stopping,
                    log_prefix=prefix,
                )
            finally:
                libsrt.close(sock)

        await run_in_own_thread(session, name=f"srt pull {prefix.strip()}")

    def _connect(self, address: str, passphrase: str | None, prefix: str) -> int:
        sock = libsrt.create()
        try:
            libsrt.set_int(sock, libsrt.SRTO_CONNTIMEO, CONNECT_TIMEOUT_MS)
            libsrt.set_int(sock, libsrt.SRTO_RCVTIMEO, int(POLL * 1000))
            libsrt.set_int(sock, libsrt.SRTO_LATENCY, self._options.latency_ms)
            if passphrase is not None:
                libsrt.set_string(sock, libsrt.SRTO_PASSPHRASE, passphrase)
                libsrt.set_int(sock, libsrt.SRTO_PBKEYLEN, self._options.key_length)
            if self._stream_id:
                libsrt.set_string(sock, libsrt.SRTO_STREAMID, self._stream_id)
            libsrt.connect(sock, address, self._port)
        except libsrt.SrtError as exc:
            reason = libsrt.reject_reason(sock)
            libsrt.close(sock)
            if reason in _REJECTED_PASSPHRASE:
                raise AuthenticationFailed(
                    "the encoder refused the passphrase (or requires one)"
                ) from None
            log.info("%ssrt: could not connect: %s", prefix, exc)
            raise SourceUnreachable(str(exc)) from None
        return sock
