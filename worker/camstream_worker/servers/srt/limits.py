"""Every number the SRT ingest holds a peer to, in one place, with its reason.

Who calls this: standalone mode reads `SrtLimits.from_env()` once and hands it
to the listener (listener.py). docs/threat-model-srt.md lists the same
numbers for operators. libsrt keeps a handshake stateless (a cookie) until
the stream ID is checked in our callback, so a stranger costs a socket only
after naming a stream that exists here; every cap below is on what it costs
from then on.

Every refusal is counted under one of SRT_REFUSAL_REASONS
(metrics/worker.py) and logged without the passphrase (which never reaches
us as text from a peer: SRT checks it in its key exchange).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from camstream import settings

KIB = 1024
MIB = 1024 * KIB

# Connections in all (handshaking or publishing): one publisher per stream,
# with room for reconnects whose old connection has not timed out yet.
MAX_CONNECTIONS = 1000
# Per IPv4 address or IPv6 /64: cameras behind one NAT share an address.
MAX_PER_ADDRESS = 32
# From our callback accepting the stream ID to libsrt completing the
# handshake (the key exchange); a correct peer needs one round trip. A
# handshake that fails in between was refused by the key exchange: a wrong
# passphrase, or none.
HANDSHAKE_TIMEOUT = 3.0
# An accepted publisher that sends no byte for this long is closed (SRT's own
# peer idle timeout, SRTO_PEERIDLETIMEO, ends a silent peer too).
IDLE_TIMEOUT = 10.0
# Bytes a second averaged over BITRATE_WINDOW: a 4K H.265 camera sends ~25
# Mbit/s; above the cap a connection is closed (it costs the engine's CPU).
MAX_BITRATE = 40_000_000 // 8
BITRATE_WINDOW = 2.0
# Bytes received and not yet taken by the stream's engine; above it the
# publisher is dropped (the engine is stuck; SRT would otherwise buffer).
MAX_BUFFER = 4 * MIB
# libsrt's own receive buffer per connection (SRTO_RCVBUF), in bytes, at most:
# each connection gets what its latency needs at the bitrate cap
# (`buffer_packets`), and no more than this.
RECEIVE_BUFFER = 8 * MIB
# Seconds a connection's buffer holds beyond its latency: the listener reads
# every turn (the edge's rests 0.05 s), and a retransmission takes a round trip.
BUFFER_SLACK = 0.5
# The fewest packets a connection's buffer holds (1.3 MB, a second at
# 10 Mbit/s; ~32 bytes of libsrt's bookkeeping each): with a low bitrate cap
# (a test's 0.8 Mbit/s) a buffer of a few dozen packets made libsrt break a
# fast publisher's connection before the listener measured its bitrate. And
# the bytes of one packet's room in libsrt's receive buffer (SRTO_RCVBUF is
# counted in MSS - 28).
MIN_PACKETS = 1024
PACKET_ROOM = 1472
MESSAGE = 1316  # one live-mode message (libsrt.LIVE_PAYLOAD)


def buffer_packets(latency_ms: int, max_bitrate: int, receive_buffer: int = RECEIVE_BUFFER) -> int:
    """Packets one connection's receive buffer and flow window (SRTO_FC) hold.

    libsrt holds each packet until its play time (the latency) and sizes the
    loss lists by the flow window when the connection is made, touching every
    entry: its default window (25,600 packets) cost 0.7 MB of memory per
    connection whatever the camera sends. Sized for the latency plus
    BUFFER_SLACK at the bitrate cap (`max_bitrate`, bytes a second), a 120 ms
    camera at the 40 Mbit/s cap gets 2,356 packets (0.2 MB)."""
    wanted = -(-(latency_ms / 1000 + BUFFER_SLACK) * max_bitrate // MESSAGE)
    return int(max(MIN_PACKETS, min(wanted, receive_buffer // PACKET_ROOM)))


@dataclass(frozen=True, slots=True)
class SrtLimits:
    max_connections: int = MAX_CONNECTIONS
    max_per_address: int = MAX_PER_ADDRESS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    max_bitrate: int = MAX_BITRATE  # bytes per second
    bitrate_window: float = BITRATE_WINDOW
    max_buffer: int = MAX_BUFFER
    receive_buffer: int = RECEIVE_BUFFER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SrtLimits:
        """The limits operators may tune (CAMSTREAM_SRT_*)."""
        return cls(
            max_connections=settings.from_env(
                "CAMSTREAM_SRT_MAX_CONNECTIONS", settings.count, MAX_CONNECTIONS, environ=environ
            ),
            max_per_address=settings.from_env(
                "CAMSTREAM_SRT_MAX_PER_ADDRESS", settings.count, MAX_PER_ADDRESS, environ=environ
            ),
            handshake_timeout=settings.from_env(
                "CAMSTREAM_SRT_HANDSHAKE_TIMEOUT",
                settings.seconds,
                HANDSHAKE_TIMEOUT,
                environ=environ,
            ),
            idle_timeout=settings.from_env(
                "CAMSTREAM_SRT_IDLE_TIMEOUT", settings.seconds, IDLE_TIMEOUT, environ=environ
            ),
            max_bitrate=settings.from_env(
                "CAMSTREAM_SRT_MAX_BITRATE_BPS", settings.count, MAX_BITRATE * 8, environ=environ
            )
            // 8,
            max_buffer=settings.from_env(
                "CAMSTREAM_SRT_MAX_BUFFER_BYTES", settings.count, MAX_BUFFER, environ=environ
            ),
        )
