"""Every number the RTMP ingest holds a client to, in one place, with its reason.

Who calls this: standalone mode and the cluster worker read `Limits.from_env()`
once and hand it to the pool and the listeners (listener.py, front.py);
connections read theirs through their Host. `raise_fd_limit` runs once at a
worker's start and `connection_cap` sizes the global cap from the result.
docs/threat-model-rtmp.md lists the same numbers for operators.

Two regimes, because a client is a stranger until it proves a stream key:

- Before a publish is accepted, a client gets just enough to say who it is:
  small messages, few of them, few bytes, little time, and few at once from
  one address. Nothing it sends is kept for long.
- After, a publisher gets what cameras need (8 MiB keyframes, an hour-long
  stall never, but a bounded message rate and write queue).

Every refusal is counted under one of the reasons of
``metrics.worker.RTMP_REFUSAL_REASONS`` and logged without the key.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from camstream import settings
from camstream_worker.protocols.rtmp import chunks

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB

# -- before publish (an unauthenticated client)
# To be publishing, counted from the TCP connect (MediaMTX's readTimeout is 10 s too).
HANDSHAKE_TIMEOUT = 10.0
# Commands are a few hundred bytes (FFmpeg's connect is ~200).
PRE_PUBLISH_MAX_MESSAGE = 64 * KIB
PRE_PUBLISH_MAX_PENDING = 128 * KIB
# All bytes before the publish is accepted: the handshake (3 KiB) and a
# handful of commands; FFmpeg, OBS and GStreamer send under 5 KiB.
PRE_PUBLISH_MAX_BYTES = 256 * KIB
# FFmpeg sends 6 messages before its publish (Set Chunk Size, connect,
# releaseStream, FCPublish, createStream, publish), OBS about as many.
PRE_PUBLISH_MAX_MESSAGES = 64
# Connections not publishing yet, per IPv4 address or IPv6 /64. Cameras
# behind one NAT share an address; 32 lets that many reconnect at once.
MAX_PENDING_PER_ADDRESS = 32
# After a refused publish (wrong key, unknown stream), the next key check
# from that address waits this long (MediaMTX pauses 2 s after a failed
# authentication); checks from one address take turns.
KEY_FAILURE_PAUSE = 2.0

# -- after publish (a client that proved a stream key)
MAX_MESSAGE_SIZE = chunks.MAX_MESSAGE_SIZE  # 8 MiB: a 4K keyframe fits easily
MAX_PENDING = 2 * MAX_MESSAGE_SIZE
# A publisher that sends nothing for this long is dropped; the server's own
# stalls are not counted (see listener.py).
IDLE_TIMEOUT = 30.0

# -- every connection
# Messages a second, averaged by a token bucket. A 60 fps camera with 48 kHz
# AAC sends ~110; a flood of empty or tiny messages costs a decoding step each.
MESSAGES_PER_SECOND = 2000.0
MESSAGE_BURST = 4000.0
# Ping requests answered; the rest are ignored (they only ask for writes).
PINGS_PER_SECOND = 2.0
PING_BURST = 8.0
# Chunks decoded per turn of the event loop before the connection yields.
WORK_BUDGET = 256
# Above this many bytes queued for a client, optional replies (pings,
# acknowledgements) are skipped; above MAX_WRITE_BUFFER it is dropped as a
# slow reader (it never reads what we send).
WRITE_HIGH_WATER = 64 * KIB
MAX_WRITE_BUFFER = 256 * KIB
# A closing connection may flush its last words (a refusal) this long, then
# its socket is aborted: closed sockets do not linger on a peer that never reads.
CLOSE_GRACE = 2.0
# A publisher's reads are paused this long after each read (listener.py): it
# is then read every 30-60 ms. Each read has a fixed cost (the system call,
# the decoder's and the connection's set-up), which at 30 ms was ~15 % of an
# engine's CPU at N = 400 (bench/README.md); the media waits in the kernel
# meanwhile, far below an HLS segment. One read takes at most READ_SIZE
# (256 KiB, connection.py) per pause: ~35 Mbit/s per publisher at the longest.
READ_BATCH_SECONDS = 0.06

# -- the process
# Descriptors kept back from RTMP for everything else: segment and playlist
# files being written, the engines' pipes, listening sockets, log files.
RESERVED_FDS = 128
# RTMP may use this share of the rest; HTTP viewers (same table) get the other.
RTMP_FD_SHARE = 0.5
MIN_CONNECTION_CAP = 16
# What RLIMIT_NOFILE is raised to when the hard limit is "unlimited".
NOFILE_CEILING = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """What a listener or front allows; the defaults are the constants above."""

    read_batch_seconds: float = READ_BATCH_SECONDS
    # None: sized from the descriptor limit at start (`connection_cap`).
    max_connections: int | None = None
    max_pending_per_address: int = MAX_PENDING_PER_ADDRESS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    key_failure_pause: float = KEY_FAILURE_PAUSE
    pre_publish_max_message: int = PRE_PUBLISH_MAX_MESSAGE
    pre_publish_max_pending: int = PRE_PUBLISH_MAX_PENDING
    pre_publish_max_bytes: int = PRE_PUBLISH_MAX_BYTES
    pre_publish_max_messages: int = PRE_PUBLISH_MAX_MESSAGES
    max_message_size: int = MAX_MESSAGE_SIZE
    max_pending: int = MAX_PENDING
    messages_per_second: float = MESSAGES_PER_SECOND
    message_burst: float = MESSAGE_BURST
    pings_per_second: float = PINGS_PER_SECOND
    ping_burst: float = PING_BURST
    work_budget: int = WORK_BUDGET
    write_high_water: int = WRITE_HIGH_WATER
    max_write_buffer: int = MAX_WRITE_BUFFER
    close_grace: float = CLOSE_GRACE

    def replace(self, **changes: float | int | None) -> Limits:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The limits operators may tune (chart values set these variables)."""
        return cls(
            max_connections=settings.from_env(
                "CAMSTREAM_RTMP_MAX_CONNECTIONS", _optional_count, None, environ=environ
            ),
            max_pending_per_address=settings.from_env(
                "CAMSTREAM_RTMP_MAX_PENDING_PER_ADDRESS",
                settings.count,
                MAX_PENDING_PER_ADDRESS,
                environ=environ,
            ),
            handshake_timeout=settings.from_env(
                "CAMSTREAM_RTMP_HANDSHAKE_TIMEOUT", _positive, HANDSHAKE_TIMEOUT, environ=environ
            ),
            idle_timeout=settings.from_env(
                "CAMSTREAM_RTMP_IDLE_TIMEOUT", _positive, IDLE_TIMEOUT, environ=environ
            ),
            key_failure_pause=settings.from_env(
                "CAMSTREAM_RTMP_KEY_FAILURE_PAUSE",
                settings.seconds,
                KEY_FAILURE_PAUSE,
                environ=environ,
            ),
        )


def _optional_count(text: str) -> int | None:
    """A whole number of at least 1, or empty for "sized from the descriptor limit"."""
    return settings.count(text) if text else None


def _positive(text: str) -> float:
    value = settings.seconds(text)
    if value <= 0:
        raise ValueError("not a number of seconds above 0")
    return value


def fd_limit() -> int:
    """This process's RLIMIT_NOFILE soft limit."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(configured: int | None, nofile: int | None = None) -> int:
    """The global RTMP connection cap: the configured one, never above what descriptors allow.

    Each connection holds a descriptor; so do viewers' HTTP connections and
    the files being written. Past the cap, connections are accepted and
    closed at once (counted as ``capacity``) instead of running the process
    out of descriptors.
    """
    soft = fd_limit() if nofile is None else nofile
    if soft == resource.RLIM_INFINITY:
        soft = NOFILE_CEILING
    by_fds = max(MIN_CONNECTION_CAP, int((soft - RESERVED_FDS) * RTMP_FD_SHARE))
    return by_fds if configured is None else min(configured, by_fds)


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (as nginx's worker_rlimit_nofile).

    Called once at a worker's start, before any listener sizes its cap;
    engine processes inherit it. Returns the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit to %d: %s", target, exc)
    log.info("descriptor limit %d (hard %s)", soft, "unlimited" if hard < 0 else hard)
    return soft
