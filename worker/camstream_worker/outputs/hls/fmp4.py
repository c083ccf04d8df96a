"""Fragmented MP4 segments for HLS (RFC 8216 3.3), made by PyAV's mp4 muxer.

Who calls this: writer.py, for streams with `hls.segmentType: fmp4`. Each segment
is muxed alone (as MPEG-TS segments are), with `empty_moov` so the header
carries no samples: its ftyp+moov become the session's init segment
(EXT-X-MAP) and its moof+mdat the media segment. A lone muxer numbers each
track's time from zero, so the tfdt box (the fragment's decode time) is
patched to the track's real first decode time; that keeps timestamps
continuous across segments, as a player requires. Pure byte work on top of
the muxer: no decoding.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Sequence

import av

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def mux_fragment(
    templates: Sequence[av.stream.Stream], packets: Sequence[tuple[int, av.Packet]]
) -> tuple[bytes, bytes]:
    """Mux one segment; return (init segment, media segment)."""
    buffer = io.BytesIO()
    first_dts: dict[int, int] = {}
    with av.open(buffer, "w", format="mp4", options={"movflags": MOVFLAGS}) as muxer:
        outputs = [muxer.add_stream_from_template(t) for t in templates]
        for index, packet in packets:
            packet.stream = outputs[index]
            muxer.mux(packet)  # rescales the packet to the track's timescale
            if index not in first_dts and packet.dts is not None:
                first_dts[index] = packet.dts
    data = bytearray(buffer.getvalue())
    init_end = None
    media = bytearray()
    for kind, offset, size in _boxes(data, 0, len(data)):
        if kind == "moof":
            init_end = init_end if init_end is not None else offset
            _patch_tfdt(data, offset, size, first_dts)
            media += data[offset : offset + size]
        elif kind == "mdat" and init_end is not None:
            media += data[offset : offset + size]
    if init_end is None:
        raise ValueError("the mp4 muxer wrote no fragment")
    return bytes(data[:init_end]), bytes(media)


def _patch_tfdt(data: bytearray, moof: int, size: int, first_dts: dict[int, int]) -> None:
    for kind, offset, box_size in _boxes(data, moof + 8, moof + size):
        if kind != "traf":
            continue
        track_id = None
        for inner, at, _ in _boxes(data, offset + 8, offset + box_size):
            if inner == "tfhd":
                track_id = struct.unpack_from(">I", data, at + 12)[0]
            elif inner == "tfdt" and track_id is not None:
                dts = first_dts.get(track_id - 1, 0)  # tracks are numbered from 1 in order
                if data[at + 8] == 1:
                    struct.pack_into(">Q", data, at + 12, dts)
                else:
                    struct.pack_into(">I", data, at + 12, dts & 0xFFFFFFFF)


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            size = struct.unpack_from(">Q", data, offset + 8)[0]
        if size < 8 or offset + size > end:
            raise ValueError("malformed mp4 box")
        yield kind.decode("latin-1"), offset, size
        offset += size
