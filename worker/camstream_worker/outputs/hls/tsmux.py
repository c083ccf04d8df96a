"""MPEG-TS segments for passthrough H.264 + AAC, written in Python without PyAV.

Who calls this: writer.py, at each segment cut, for a session whose packets
are light `Frame`s (packets.py: the RTMP source) and whose codecs this module
carries (`TsMuxer.for_codecs` says None otherwise, and the writer keeps
PyAV's muxer: HEVC, HE-AAC, anything odd). Pure byte work, no I/O.

Why: PyAV's muxer needs an `av.Packet` per frame and a fresh muxer per
segment; together they were 20-25 % of an engine's CPU at N = 200
(bench/README.md). What FFmpeg's mpegts muxer does for these two codecs is
small, and done here the same way, so the segments read the same to a player:

- each segment starts with a PAT and a PMT (program 1, PMT on PID 0x1000, the
  PCR on the video PID, elementary streams on 0x100 + their template index,
  as FFmpeg numbers them);
- one PES per frame, PTS and DTS in 90 kHz (FLV milliseconds times 90, no offset:
  FFmpeg adds none when the muxer is opened by PyAV), DTS only when it
  differs; video PES length 0 (unbounded), audio's stated;
- H.264 from RTMP is AVCC (length-prefixed NAL units): written as Annex B,
  an access unit delimiter first, and the SPS and PPS of the AVC decoder
  configuration before an IDR that does not carry its own (FFmpeg's
  h264_mp4toannexb filter and its muxer's AUD, in one pass, with their
  start code lengths: the segments demux to the same bytes as PyAV's);
- AAC from RTMP is raw: each frame gets the ADTS header its
  AudioSpecificConfig gives (frames already in ADTS pass as they are);
- the first TS packet of a video PES carries a PCR (= DTS, as FFmpeg's
  variable-rate PCR) and, on keyframes, the random access indicator; the last
  TS packet of each PES is padded with adaptation-field stuffing;
- continuity counters run per PID for the whole session (a player reading
  the segments back to back sees no gap).

Cheap per TS packet: headers precomputed per PID and continuity counter,
each PES head (PES header, timestamps, AUD or ADTS) built as one integer, a
one-NAL frame cut straight from its AVCC bytes (its 4-byte length becomes
the start code in place: no copy), full packets sliced by `map` over cached
slice objects, and one bytes.join per segment. A frame that cannot be
written (an AVCC length running past its frame, an AAC frame over ADTS's
8191 bytes) is left out and counted (`refused`); its segment is written
without it, as PyAV's muxer, which fails on such a frame, could not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

PAT_PID: Final = 0x0000
PMT_PID: Final = 0x1000
FIRST_ES_PID: Final = 0x100  # + the template's index, as FFmpeg numbers them
PROGRAM: Final = 1
TS_ID: Final = 1
PACKET_SIZE: Final = 188
PAYLOAD_SIZE: Final = 184

STREAM_TYPE_H264: Final = 0x1B
STREAM_TYPE_AAC_ADTS: Final = 0x0F
STREAM_ID_VIDEO: Final = 0xE0
STREAM_ID_AUDIO: Final = 0xC0

START_CODE: Final = b"\x00\x00\x00\x01"
SHORT_START_CODE: Final = b"\x00\x00\x01"
AUD: Final = START_CODE + b"\x09\xf0"  # access unit delimiter, any slice type
NAL_IDR: Final = 5
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9
# AAC object types ADTS can name (its profile field is 2 bits: Main, LC, SSR, LTP).
ADTS_OBJECT_TYPES: Final = range(1, 5)
ADTS_MAX_FRAME: Final = (1 << 13) - 1
TIMESTAMP_MASK: Final = (1 << 33) - 1


__all__ = ["TsMuxer", "TsUnsupported"]


def _pes_time(ticks: int) -> int:
    """A 33-bit 90 kHz time as a PES header spreads it: 3 + 15 + 15 bits, each
    followed by a marker bit (the markers and the 4-bit prefix are in the
    constant it is ORed into)."""
    return (ticks >> 30) << 33 | ((ticks >> 15) & 0x7FFF) << 17 | (ticks & 0x7FFF) << 1


class TsUnsupported(ValueError):
    """Codecs or a frame this writer does not carry: use PyAV's muxer instead."""


class TimedFrame(Protocol):
    """What the muxer reads of a packet (packets.py `Frame`)."""

    @property
    def data(self) -> bytes: ...
    @property
    def dts(self) -> int: ...
    @property
    def pts(self) -> int: ...
    @property
    def is_keyframe(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class _H264:
    length_size: int  # bytes of each NAL unit's length prefix (1, 2 or 4)
    parameter_sets: bytes  # SPS and PPS in Annex B, put before an IDR that lacks them


@dataclass(frozen=True, slots=True)
class _Aac:
    adts: int  # the 7-byte ADTS header as an integer, its 13-bit frame length (bit 13) zero


def parse_avc_config(extradata: bytes) -> _H264:
    """The NAL length size and Annex B SPS + PPS of an AVCDecoderConfigurationRecord."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise TsUnsupported("not an AVC decoder configuration record")
    length_size = (extradata[4] & 0x03) + 1
    if length_size == 3:
        raise TsUnsupported("3-byte NAL unit lengths")
    parts: list[bytes] = []
    pos = 5
    try:
        for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count (8 bits)
            count = extradata[pos] & count_mask
            pos += 1
            for _ in range(count):
                size = int.from_bytes(extradata[pos : pos + 2], "big")
                pos += 2
                if size == 0 or pos + size > len(extradata):
                    raise TsUnsupported("truncated AVC decoder configuration record")
                parts += (START_CODE, extradata[pos : pos + size])
                pos += size
    except IndexError:
        raise TsUnsupported("truncated AVC decoder configuration record") from None
    return _H264(length_size, b"".join(parts))


def parse_audio_config(extradata: bytes) -> _Aac:
    """The fixed part of the ADTS header an AudioSpecificConfig gives."""
    if len(extradata) < 2:
        raise TsUnsupported("truncated AudioSpecificConfig")
    object_type = extradata[0] >> 3
    rate_index = ((extradata[0] & 0x07) << 1) | (extradata[1] >> 7)
    channels = (extradata[1] >> 3) & 0x0F
    if object_type not in ADTS_OBJECT_TYPES:
        raise TsUnsupported(f"AAC object type {object_type} has no ADTS profile")
    if rate_index > 12:
        raise TsUnsupported("explicit AAC sampling rate")
    if not 1 <= channels <= 7:
        raise TsUnsupported(f"AAC channel configuration {channels}")
    # Sync word, MPEG-4, layer 0, no CRC; profile, rate, channels; buffer fullness 0x7FF (VBR).
    return _Aac(
        (0xFFF << 44)
        | (1 << 40)
        | ((object_type - 1) << 38)
        | (rate_index << 34)
        | (channels << 30)
        | (0x7FF << 2)
    )


class _Pid:
    """One PID's continuity counter and its precomputed TS packet headers."""

    __slots__ = ("cc", "pid", "plain", "plain_run", "start", "start_af", "tail_af")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cc = 0
        high, low = pid >> 8, pid & 0xFF
        self.plain = [bytes((0x47, high, low, 0x10 | cc)) for cc in range(16)]
        self.plain_run = self.plain * 64  # sliced for runs of up to 1008 full packets
        self.start = [bytes((0x47, 0x40 | high, low, 0x10 | cc)) for cc in range(16)]
        self.start_af = [bytes((0x47, 0x40 | high, low, 0x30 | cc)) for cc in range(16)]
        self.tail_af = [bytes((0x47, high, low, 0x30 | cc)) for cc in range(16)]


def _crc32_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc32_table()


def crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2, the checksum of PSI sections."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _section(table_id: int, extension: int, body: bytes) -> bytes:
    """A PSI section (version 0, current, section 0 of 0) with its CRC."""
    length = 5 + len(body) + 4
    head = bytes(
        (
            table_id,
            0xB0 | (length >> 8),
            length & 0xFF,
            extension >> 8,
            extension & 0xFF,
            0xC1,
            0,
            0,
        )
    )
    section = head + body
    return section + crc32_mpeg(section).to_bytes(4, "big")


class TsMuxer:
    """MPEG-TS for one source session: `segment()` per cut, counters carried between them."""

    def __init__(self, codecs: Sequence[tuple[str, bytes]]) -> None:
        """`codecs`: (PyAV codec name, extradata) per template index; raises TsUnsupported."""
        self._tracks: list[_H264 | _Aac] = []
        self._pids: list[_Pid] = []
        self._video: int | None = None
        entries = b""
        for index, (name, extradata) in enumerate(codecs):
            pid = FIRST_ES_PID + index
            if name == "h264":
                if self._video is not None:
                    raise TsUnsupported("two video tracks")
                self._tracks.append(parse_avc_config(extradata))
                self._video = index
                stream_type = STREAM_TYPE_H264
            elif name == "aac":
                self._tracks.append(parse_audio_config(extradata))
                stream_type = STREAM_TYPE_AAC_ADTS
            else:
                raise TsUnsupported(f"codec {name}")
            self._pids.append(_Pid(pid))
            entries += bytes((stream_type, 0xE0 | (pid >> 8), pid & 0xFF, 0xF0, 0x00))
        if not self._tracks:
            raise TsUnsupported("no tracks")
        pcr_pid = FIRST_ES_PID + (self._video if self._video is not None else 0)
        pat = _section(
            0x00,
            TS_ID,
            bytes((PROGRAM >> 8, PROGRAM & 0xFF, 0xE0 | (PMT_PID >> 8), PMT_PID & 0xFF)),
        )
        pmt = _section(
            0x02, PROGRAM, bytes((0xE0 | (pcr_pid >> 8), pcr_pid & 0xFF, 0xF0, 0x00)) + entries
        )
        self._pat = _Pid(PAT_PID)
        self._pmt = _Pid(PMT_PID)
        self.refused = 0  # frames left out, malformed
        self.last_refusal = ""
        # pointer field 0, the section, then 0xff to the end of the packet
        self._pat_payload = b"\x00" + pat + b"\xff" * (PAYLOAD_SIZE - 1 - len(pat))
        self._pmt_payload = b"\x00" + pmt + b"\xff" * (PAYLOAD_SIZE - 1 - len(pmt))

    @classmethod
    def for_codecs(cls, codecs: Sequence[tuple[str, bytes]]) -> TsMuxer | None:
        """A muxer for these tracks, or None when this module does not carry them."""
        try:
            return cls(codecs)
        except TsUnsupported:
            return None

    def segment(self, packets: Sequence[tuple[int, TimedFrame]]) -> bytes:
        """One segment: PAT, PMT, then a PES per packet, in the order given.

        The same bytes as `tables()` followed by `frames()`, which a writer
        that writes its segment as it goes calls apart.
        """
        parts: list[bytes | memoryview] = []
        self.tables(parts)
        self.frames(parts, packets)
        return b"".join(parts)

    def tables(self, parts: list[bytes | memoryview]) -> None:
        """Append the start of a segment to `parts`: PAT and PMT (their counters move)."""
        self._tables(parts)

    def frames(
        self, parts: list[bytes | memoryview], packets: Sequence[tuple[int, TimedFrame]]
    ) -> None:
        """Append a PES per packet to `parts`, in the order given: a segment in pieces.

        `parts` holds pieces of the TS packets (headers, slices of the frames),
        to be joined. A frame that cannot be written
        (an AVCC length past its frame, an AAC frame too long for ADTS) is
        left out, counted in `refused` with the reason in `last_refusal`: the
        rest of the segment is written as if it never came (no continuity
        counter moves for it).
        """
        self._frames(parts, packets)

    def _tables(self, parts: list[bytes | memoryview]) -> None:
        pat, pmt = self._pat, self._pmt
        parts += (pat.start[pat.cc], self._pat_payload, pmt.start[pmt.cc], self._pmt_payload)
        pat.cc = (pat.cc + 1) & 15
        pmt.cc = (pmt.cc + 1) & 15

    def _frames(
        self, parts: list[bytes | memoryview], packets: Sequence[tuple[int, TimedFrame]]
    ) -> None:
        tracks, pids, video = self._tracks, self._pids, self._video
        # Headers are built as one integer each and turned into bytes once:
        # cheaper in CPython than a bytes object per field.
        for index, frame in packets:
            try:
                track = tracks[index]
                pts = (frame.pts * 90) & TIMESTAMP_MASK
                if index == video:
                    assert isinstance(track, _H264)
                    dts = (frame.dts * 90) & TIMESTAMP_MASK
                    if dts == pts:  # PES header, PTS, then the AUD: 20 bytes
                        head = (_VIDEO_PTS | (_pes_time(pts) << 48)).to_bytes(20, "big")
                    else:  # PES header, PTS, DTS, then the AUD: 25 bytes
                        head = (
                            _VIDEO_PTS_DTS | (_pes_time(pts) << 88) | (_pes_time(dts) << 48)
                        ).to_bytes(25, "big")
                    data = frame.data
                    size_of = track.length_size
                    if (
                        size_of == 4
                        and int.from_bytes(data[:4], "big") == len(data) - 4
                        and len(data) > 4
                        and data[4] & 0x1F not in _SPECIAL_NALS
                    ):
                        # One NAL unit, no parameter sets due: AVCC's 4-byte length
                        # becomes the start code in place, so the frame is not copied.
                        head += START_CODE
                        offset = 4
                    else:
                        data = _annex_b(data, track)
                        offset = 0
                    # The adaptation field of the first TS packet: PCR (= DTS), random access.
                    fields = (_PCR_KEY if frame.is_keyframe else _PCR) | dts << 15
                    _packetize(parts, pids[index], head, data, offset, fields.to_bytes(8, "big"))
                else:
                    assert isinstance(track, _Aac)
                    data = frame.data
                    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
                        length = 8 + len(data)  # already ADTS
                        if length > 0xFFFF:
                            raise TsUnsupported(f"audio frame of {len(data)} bytes")
                        head = (_AUDIO_PTS | length << 64 | _pes_time(pts)).to_bytes(14, "big")
                    else:
                        size = len(data) + 7
                        if size > ADTS_MAX_FRAME:
                            raise TsUnsupported(
                                f"AAC frame of {size} bytes: ADTS holds {ADTS_MAX_FRAME}"
                            )
                        length = 8 + size  # flags, header length, PTS, then the payload
                        head = (
                            (_AUDIO_PTS | length << 64 | _pes_time(pts)) << 56
                            | track.adts
                            | size << 13
                        ).to_bytes(21, "big")
                    _packetize(parts, pids[index], head, data, 0, b"")
            except TsUnsupported as exc:  # raised before any TS packet of the frame
                self.refused += 1
                self.last_refusal = str(exc)


def _annex_b(data: bytes, track: _H264) -> bytes:
    """A frame's NAL units in Annex B, SPS+PPS before a bare IDR, the AUD not repeated.

    Start codes as FFmpeg's h264_mp4toannexb writes them: 4 bytes for the
    first NAL unit and for parameter sets, 3 bytes for the others (the
    caller's PES head ends with the AUD its mpegts muxer puts in front);
    the segments then demux to the very bytes PyAV's would.
    """
    size_of = track.length_size
    end = len(data)
    view = memoryview(data)  # slices without copies; the join below copies once
    parts: list[bytes | memoryview] = []
    pos = 0
    has_sps = False
    while pos < end:
        size = int.from_bytes(data[pos : pos + size_of], "big")
        pos += size_of
        if size == 0 or pos + size > end:
            raise TsUnsupported("NAL unit length past the end of its frame")
        kind = data[pos] & 0x1F
        if kind == NAL_SPS or kind == NAL_PPS:
            has_sps = has_sps or kind == NAL_SPS
            parts += (START_CODE, view[pos : pos + size])
        else:
            if kind == NAL_IDR and not has_sps:
                parts.append(track.parameter_sets)
                has_sps = True
            if kind == NAL_AUD and not parts:
                pass  # a frame's own leading delimiter: the head's AUD stands for it
            else:
                parts += (START_CODE if not parts else SHORT_START_CODE, view[pos : pos + size])
        pos += size
    return b"".join(parts)


def _packetize(
    parts: list[bytes | memoryview],
    pid: _Pid,
    head: bytes,
    data: bytes,
    offset: int,
    fields: bytes,
) -> None:
    """Append the TS packets of the PES `head` + `data[offset:]`.

    `fields`: the first packet's adaptation field (length byte included), or
    empty. The last packet is padded with adaptation-field stuffing. `data`
    is sliced, never copied whole.
    """
    cc = pid.cc
    total = len(head) + len(data) - offset
    room = PAYLOAD_SIZE - len(fields)
    if total < room or (not fields and total < PAYLOAD_SIZE):
        # One packet: its adaptation field carries the flags and the stuffing.
        if fields:
            stuffing = bytes((PAYLOAD_SIZE - total - 1,)) + fields[1:]
            stuffing += b"\xff" * (PAYLOAD_SIZE - total - len(fields))
        else:
            stuffing = _STUFFING[PAYLOAD_SIZE - total]
        parts += (pid.start_af[cc], stuffing, head, data[offset:] if offset else data)
        pid.cc = (cc + 1) & 15
        return
    pos = offset + room - len(head)  # where the second packet's payload starts in data
    if fields:
        parts += (pid.start_af[cc], fields, head, data[offset:pos])
    else:
        parts += (pid.start[cc], head, data[offset:pos])
    cc = (cc + 1) & 15
    full, tail = divmod(len(data) - pos, PAYLOAD_SIZE)
    if full:
        if cc + full <= len(pid.plain_run):
            headers = pid.plain_run[cc : cc + full]
        else:
            plain = pid.plain
            headers = [plain[(cc + i) & 15] for i in range(full)]
        run: list[bytes | memoryview] = [b""] * (2 * full)
        run[0::2] = headers
        stop = pos + full * PAYLOAD_SIZE
        slices = _SLICES.get(pos)
        if slices is None or full > len(slices):
            slices = _slices_from(pos, max(full, SLICES_CACHED))
        # One C-level map over precomputed slice objects: ~2x a comprehension.
        run[1::2] = map(data.__getitem__, slices[:full])
        parts += run
        cc = (cc + full) & 15
        pos = stop
    if tail:
        parts += (pid.tail_af[cc], _STUFFING[PAYLOAD_SIZE - tail], data[pos:])
        cc = (cc + 1) & 15
    pid.cc = cc


# Slice objects for the full packets of a PES, by where they start in its
# data: a few start positions recur (the head's size is fixed per kind of PES).
SLICES_CACHED = 512  # packets per PES (94 KB) kept per start position
MAX_CACHED_STARTS = 64
_SLICES: dict[int, list[slice]] = {}


def _slices_from(pos: int, count: int) -> list[slice]:
    slices = [
        slice(at, at + PAYLOAD_SIZE) for at in range(pos, pos + count * PAYLOAD_SIZE, PAYLOAD_SIZE)
    ]
    if count == SLICES_CACHED and len(_SLICES) < MAX_CACHED_STARTS:
        _SLICES[pos] = slices
    return slices


def _stuffing_of(total: int) -> bytes:
    """An adaptation field of `total` bytes (its length byte included), flags 0, then 0xff."""
    if total == 1:
        return b"\x00"
    return bytes((total - 1, 0)) + b"\xff" * (total - 2)


_STUFFING = [b""] + [_stuffing_of(total) for total in range(1, PAYLOAD_SIZE + 1)]
# The PES headers' fixed bits, to OR the timestamps into (see TsMuxer.segment):
# 00 00 01 E0, length 0, flags 0x80, PTS (0x80) or PTS+DTS (0xC0), header length,
# the timestamps' prefixes and marker bits, then the AUD.
_TIMESTAMP_MARKERS = (1 << 32) | (1 << 16) | 1
_AUD_BITS = int.from_bytes(AUD, "big")
_VIDEO_PTS = (
    int.from_bytes(b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05", "big") << 88
    | ((2 << 36) | _TIMESTAMP_MARKERS) << 48
    | _AUD_BITS
)
_VIDEO_PTS_DTS = (
    int.from_bytes(b"\x00\x00\x01\xe0\x00\x00\x80\xc0\x0a", "big") << 128
    | ((3 << 36) | _TIMESTAMP_MARKERS) << 88
    | ((1 << 36) | _TIMESTAMP_MARKERS) << 48
    | _AUD_BITS
)
# 00 00 01 C0, the length (ORed in), flags 0x80 0x80, header length 5, the PTS.
_AUDIO_PTS = int.from_bytes(b"\x00\x00\x01\xc0\x00\x00\x80\x80\x05", "big") << 40 | (
    (2 << 36) | _TIMESTAMP_MARKERS
)
# Adaptation field: length 7, flags (PCR; PCR and random access), the PCR's
# reserved bits and a zero extension; the 33-bit base is ORed in at bit 15.
_PCR = (7 << 56) | (0x10 << 48) | (0x3F << 9)
_PCR_KEY = (7 << 56) | (0x50 << 48) | (0x3F << 9)
# NAL unit types that take the slow path: parameter sets, IDR (SPS/PPS may be due), AUD.
_SPECIAL_NALS = frozenset({NAL_IDR, NAL_SPS, NAL_PPS, NAL_AUD})
