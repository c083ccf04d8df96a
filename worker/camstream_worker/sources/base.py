"""The one interface every source kind implements, the sink it feeds, and what it is given.

Who calls this: every module of sources/ implements `Source`; kinds.py makes
one per stream; the supervisor runs it once per session. A source knows how
to get packets from one kind of camera; it knows nothing of retries, backoff
or watchdogs (the supervisor owns those) nor of HLS (the stream's outputs do).

`run` returns only when stopped, or by raising: a source that ends raises
SourceEnded, so the supervisor's loop has one exit path to reason about.

What the supervisor may ask a source is its one trait, `pushed`: whether the
camera connects to us (it may come at any time) or we connect to it. A pushed
source also takes publishers (`PushedSource.admit`), which is how the RTMP
listener reaches it through the engine without anybody asking which protocol
it speaks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlsplit, urlunsplit

import av

from camstream.spec import Credentials
from camstream_worker.packets import Packet
from camstream_worker.protocols.rtmp.publish import PublishSink
from camstream_worker.secrets.base import SecretResolver
from camstream_worker.sources.egress import Egress

# PyAV codec names we can carry in MPEG-TS without decoding.
VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac"})


class PacketSink(Protocol):
    """Receives one source session: templates first, then their packets."""

    def begin(self, templates: Sequence[av.stream.Stream]) -> None: ...

    def packet(self, index: int, packet: Packet) -> None:
        """One packet of template `index`: an `av.Packet`, or a light `Frame` (packets.py)."""
        ...


class Source(Protocol):
    """One camera, read until stopped or failed."""

    @property
    def pushed(self) -> bool:
        """True when the camera connects to us and comes when it likes."""
        ...

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        """Feed `sink` until `stopping` is set (then return) or raise MediaError."""
        ...


@runtime_checkable
class PushedSource(Protocol):
    """A source a camera publishes into (RTMP push)."""

    async def admit(self, offered_key: str, peer: str) -> PublishSink | None:
        """A publisher offering `offered_key` from `peer`: its sink, or None to refuse."""
        ...


@runtime_checkable
class SocketFedSource(Protocol):
    """A source fed a publisher's bytes as a socket (SRT push: the listener relays them)."""

    def admit_socket(self, sock: socket.socket, peer: str) -> None:
        """An accepted publisher (the listener checked it): the source owns `sock` now."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """What a source is given besides its stream's spec."""

    secrets: SecretResolver  # asked again at each session, so a fixed Secret heals the stream
    log_prefix: str  # "[namespace/name] ": every log line names its stream
    # Shows why a stream that is not live yet is still waiting (a refused publisher).
    note: Callable[[str, str], None]
    # The engine process's one way out: the deny-list, the egress proxy, the file roots.
    egress: Egress


async def url_with_credentials(
    url: str, credentials: Credentials | None, secrets: SecretResolver, namespace: str
) -> str:
    """`url` with the user and password of the stream's Secret in its userinfo.

    For FFmpeg's eyes only: the result must never be logged nor put into an
    error (errors.py writes its messages without the URL for that reason).
    """
    if credentials is None:
        return url
    username = await secrets.get(namespace, credentials.username)
    password = await secrets.get(namespace, credentials.password)
    return with_credentials(url, username, password)


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """Put user and password into the URL's userinfo, escaped."""
    if not username:
        return url
    parts = urlsplit(url)
    userinfo = quote(username, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


T = TypeVar("T")


async def run_in_own_thread(function: Callable[[], T], *, name: str) -> T:
    """Run a blocking source loop in a thread of its own and await its end.

    Not asyncio.to_thread: its shared executor has min(32, cores + 4) threads,
    and a source occupies its thread for the whole session, so a 2-core
    worker could run only six pulled cameras at once and queued the rest.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():
            outcome()

    def target() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting task, not lost in the thread
            error = exc  # `exc` is unbound after the except block; the callback runs later
            loop.call_soon_threadsafe(settle, lambda: done.set_exception(error))
        else:
            loop.call_soon_threadsafe(settle, lambda: done.set_result(result))

    threading.Thread(target=target, name=name, daemon=True).start()
    return await done
