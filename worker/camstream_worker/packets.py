"""The packets a source hands its sink: PyAV's `av.Packet`, or a light `Frame`.

Who calls this: sources (sources/rtmp.py builds a `Frame` per FLV frame; the
PyAV-demuxing sources hand on `av.Packet`s), the session (session.py) and
every output (outputs/): one `Packet` type flows through the one sink
interface (sources/base.py `PacketSink`, outputs/base.py `Output`).

Why a second kind: an `av.Packet` per frame cost the RTMP path a copy into an
FFmpeg buffer, a Fraction time base and four attribute writes through Cython
per frame, and the HLS writer held ~140 of them per GOP (bench/README.md,
"Where camstream's time and memory go"). A `Frame` is the frame's bytes and
its millisecond timestamps in one slotted object. It reads like an `av.Packet`
where outputs read packets (`dts`, `pts`, `time_base`, `is_keyframe`, `size`,
`bytes(packet)`), so most outputs need no branch; an output that must give
FFmpeg an `av.Packet` (decoders, PyAV's muxers) calls `to_av` there, and only
there.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av

MILLISECONDS: Final = Fraction(1, 1000)


class Frame:
    """One coded frame with millisecond timestamps (FLV's own clock)."""

    __slots__ = ("data", "dts", "is_keyframe", "pts", "size")

    # What an av.Packet's time base would be; a class constant, never rebuilt.
    time_base: Final = MILLISECONDS  # type: ignore[misc]  # a class-level constant on purpose

    def __init__(self, data: bytes, dts: int, pts: int, is_keyframe: bool) -> None:
        self.data = data  # the codec's own framing: AVCC/HVCC length-prefixed NALs, raw AAC
        self.dts = dts
        self.pts = pts
        self.is_keyframe = is_keyframe
        self.size = len(data)

    def __bytes__(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        key = " key" if self.is_keyframe else ""
        return f"<Frame dts={self.dts} pts={self.pts} size={self.size}{key}>"


Packet = av.Packet | Frame


def to_av(packet: Packet) -> av.Packet:
    """An `av.Packet` for FFmpeg's eyes (a muxer, a decoder); a Frame is copied into one."""
    if isinstance(packet, Frame):
        converted = av.Packet(packet.data)
        converted.time_base = MILLISECONDS
        converted.dts = packet.dts
        converted.pts = packet.pts
        converted.is_keyframe = packet.is_keyframe
        return converted
    return packet
