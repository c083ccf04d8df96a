"""The Python MPEG-TS writer (outputs/hls/tsmux.py), read back by FFmpeg's own demuxer.

Real frames: H.264 (with B-frames, so pts != dts) and AAC encoded in-process
by PyAV's libx264 and AAC encoders, turned into what an RTMP publisher sends
(AVCC length-prefixed NAL units with an avcC record; raw AAC with its
AudioSpecificConfig). Random GOP runs, start times and interleavings are muxed
and demuxed with `av.open` on the bytes: every packet's pts, dts, keyframe
flag and payload must come back, and the TS packets themselves must be
well-formed (sync bytes, continuity counters per PID, adaptation fields).
"""

from __future__ import annotations

import io
import math
import random
from array import array
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.outputs.hls.tsmux import (
    AUD,
    START_CODE,
    TsMuxer,
    TsUnsupported,
    crc32_mpeg,
    parse_audio_config,
    parse_avc_config,
)
from camstream_worker.packets import Frame

GOP = 10
FPS = 25


def _nal_units(annex_b: bytes) -> list[bytes]:
    units = []
    for chunk in annex_b.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01"):
        if chunk:
            units.append(chunk)
    return units


def _avcc(units: list[bytes]) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


class Encoded:
    """A short H.264 + AAC clip as an RTMP publisher would carry it."""

    def __init__(self) -> None:
        video = av.CodecContext.create("libx264", "w")
        video.width, video.height = 64, 48
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, 1000)
        video.framerate = Fraction(FPS)
        video.gop_size = GOP
        video.max_b_frames = 2
        video.options = {"keyint_min": str(GOP), "sc_threshold": "0", "bframes": "2"}
        self.video: list[tuple[bytes, int, int, bool]] = []  # AVCC, dts ms, pts ms, key
        sps = pps = b""
        rng = random.Random(1)
        packets = []
        for i in range(GOP * 6):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(rng.randrange(256) for _ in range(plane.buffer_size)))
            frame.pts = i * 40
            frame.time_base = Fraction(1, 1000)
            packets += video.encode(frame)
        packets += video.encode(None)
        for packet in packets:
            units = _nal_units(bytes(packet))
            for unit in units:
                if unit[0] & 0x1F == 7:
                    sps = unit
                elif unit[0] & 0x1F == 8:
                    pps = unit
            # An RTMP publisher sends the parameter sets in the avcC record, not in band.
            units = [u for u in units if u[0] & 0x1F not in (7, 8)]
            assert packet.dts is not None and packet.pts is not None
            self.video.append(
                (_avcc(units), packet.dts + 200, packet.pts + 200, packet.is_keyframe)
            )
        assert sps and pps
        self.sps, self.pps = sps, pps
        self.avcc_config = (
            bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1))
            + len(sps).to_bytes(2, "big")
            + sps
            + b"\x01"
            + len(pps).to_bytes(2, "big")
            + pps
        )
        audio = av.CodecContext.create("aac", "w")
        audio.sample_rate = 44100
        audio.layout = "stereo"
        audio.format = "fltp"
        audio.time_base = Fraction(1, 44100)
        self.audio: list[tuple[bytes, int]] = []  # raw AAC, dts ms
        samples = 0
        out = []
        for n in range(120):
            frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            tone = array("f", (math.sin((n * 1024 + i) * 0.06) * 0.3 for i in range(1024)))
            for plane in frame.planes:
                plane.update(tone.tobytes())
            frame.sample_rate = 44100
            frame.pts = samples
            samples += 1024
            out += audio.encode(frame)
        for packet in out:
            assert packet.pts is not None
            self.audio.append((bytes(packet), 200 + round(packet.pts * 1000 / 44100)))
        self.asc = bytes(audio.extradata or b"")


_CLIP: list[Encoded] = []  # encoded once per run: hypothesis examples cannot take fixtures


def _clip() -> Encoded:
    if not _CLIP:
        _CLIP.append(Encoded())
    return _CLIP[0]


@pytest.fixture
def clip() -> Encoded:
    return _clip()


def _expected_video(clip: Encoded, avcc: bytes, key: bool) -> bytes:
    units = []
    pos = 0
    while pos < len(avcc):
        size = int.from_bytes(avcc[pos : pos + 4], "big")
        units.append(avcc[pos + 4 : pos + 4 + size])
        pos += 4 + size
    # As FFmpeg's h264_mp4toannexb: the parameter sets just before the first IDR
    # slice; 4-byte start codes for the first unit and parameter sets, else 3.
    idr = next((i for i, u in enumerate(units) if u[0] & 0x1F == 5), None)
    if idr is not None:
        units[idr:idr] = [clip.sps, clip.pps]
    out = b""
    for unit in units:
        long = not out or unit[0] & 0x1F in (7, 8)
        out += (b"\x00" if long else b"") + b"\x00\x00\x01" + unit
    return AUD + out  # and the muxer's access unit delimiter first


def _adts(clip: Encoded, raw: bytes) -> bytes:
    # Independent of tsmux: from the AudioSpecificConfig's fields, bit by bit.
    object_type = clip.asc[0] >> 3
    rate = ((clip.asc[0] & 7) << 1) | (clip.asc[1] >> 7)
    channels = (clip.asc[1] >> 3) & 15
    length = len(raw) + 7
    bits = (
        (0xFFF << 44)
        | (1 << 40)  # ID 0, layer 0, protection absent
        | ((object_type - 1) << 38)
        | (rate << 34)
        | (channels << 30)
        | (length << 13)
        | (0x7FF << 2)
    )
    return bits.to_bytes(7, "big") + raw


def _segment_frames(
    clip: Encoded, first_gop: int, gops: int, shift_ms: int, audio: bool
) -> list[tuple[int, Frame]]:
    start, stop = first_gop * GOP, (first_gop + gops) * GOP
    video = [
        Frame(data, dts + shift_ms, pts + shift_ms, key)
        for data, dts, pts, key in clip.video[start:stop]
    ]
    items: list[tuple[int, int, Frame]] = [(f.dts, 0, f) for f in video]
    if audio:
        low, high = video[0].dts, video[-1].dts
        for raw, dts in clip.audio:
            if low <= dts + shift_ms <= high:
                items.append((dts + shift_ms, 1, Frame(raw, dts + shift_ms, dts + shift_ms, True)))
    items.sort(key=lambda item: (item[0], item[1]))
    return [(index, frame) for _, index, frame in items]


def _check_packets(data: bytes) -> None:
    """Sync bytes, continuity per PID, sane adaptation fields: what ffprobe checks."""
    assert len(data) % 188 == 0
    counters: dict[int, int] = {}
    for at in range(0, len(data), 188):
        packet = data[at : at + 188]
        assert packet[0] == 0x47
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 3
        assert control in (1, 3)
        if control == 3:
            assert packet[4] <= 183
        if pid in counters:
            assert packet[3] & 15 == (counters[pid] + 1) & 15, f"continuity on PID {pid:#x}"
        counters[pid] = packet[3] & 15


def _demux(data: bytes) -> dict[str, list[tuple[int | None, int | None, bool, bytes]]]:
    found: dict[str, list[tuple[int | None, int | None, bool, bytes]]] = {"video": [], "audio": []}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            found[packet.stream.type].append(
                (packet.pts, packet.dts, packet.is_keyframe, bytes(packet))
            )
    return found


@settings(max_examples=25, deadline=None)
@given(
    first_gop=st.integers(0, 4),
    gops=st.integers(1, 2),
    shift_ms=st.integers(0, 10**9),
    audio=st.booleans(),
    segments=st.integers(1, 3),
)
def test_segments_round_trip_through_ffmpegs_demuxer(
    first_gop: int, gops: int, shift_ms: int, audio: bool, segments: int
) -> None:
    clip = _clip()
    codecs = [("h264", clip.avcc_config)] + ([("aac", clip.asc)] if audio else [])
    muxer = TsMuxer(codecs)
    whole = b""
    for n in range(segments):
        gop = (first_gop + n * gops) % 5
        frames = _segment_frames(clip, gop, min(gops, 6 - gop), shift_ms, audio)
        data = muxer.segment(frames)
        _check_packets(data)
        got = _demux(data)
        want_video = [
            (
                f.pts * 90 % (1 << 33),
                f.dts * 90 % (1 << 33),
                f.is_keyframe,
                _expected_video(clip, f.data, f.is_keyframe),
            )
            for i, f in frames
            if i == 0
        ]
        assert [g[:3] for g in got["video"]] == [w[:3] for w in want_video]
        assert [g[3] for g in got["video"]] == [w[3] for w in want_video]
        want_audio = [(f.pts * 90 % (1 << 33), _adts(clip, f.data)) for i, f in frames if i == 1]
        assert [(g[0], g[3]) for g in got["audio"]] == want_audio
        whole += data
    _check_packets(whole)  # counters run on from one segment to the next


def test_a_keyframe_starts_with_a_pcr_an_aud_and_parameter_sets(clip: Encoded) -> None:
    frames = _segment_frames(clip, 0, 1, 0, False)
    data = TsMuxer([("h264", clip.avcc_config)]).segment(frames)
    first_video = next(
        data[at : at + 188]
        for at in range(0, len(data), 188)
        if ((data[at + 1] & 0x1F) << 8) | data[at + 2] == 0x100
    )
    assert first_video[1] & 0x40  # payload unit start
    assert first_video[5] == 0x50  # PCR and random access
    payload = first_video[4 + 1 + first_video[4] :]
    assert payload.startswith(b"\x00\x00\x01\xe0")
    header = 9 + payload[8]
    assert payload[header : header + len(AUD)] == AUD  # the access unit delimiter first
    # (the parameter sets before the IDR are checked by the round trip above)


def test_psi_sections_carry_a_valid_crc(clip: Encoded) -> None:
    data = TsMuxer([("h264", clip.avcc_config), ("aac", clip.asc)]).segment([])
    for at in (0, 188):
        section_length = ((data[at + 6] & 0x0F) << 8) | data[at + 7]
        section = data[at + 5 : at + 5 + 3 + section_length]
        assert crc32_mpeg(section) == 0  # a section with its CRC checks to zero
    assert crc32_mpeg(b"123456789") == 0x0376E6E7  # CRC-32/MPEG-2's check value


@pytest.mark.parametrize(
    ("codecs", "why"),
    [
        ([("hevc", b"\x01" * 30)], "codec hevc"),
        ([("h264", b"\x00\x01\x02")], "not an AVC"),
        ([("h264", b"\x01\x64\x00\x1e\xff\xe1\x00\x40\x67")], "truncated"),
        ([("aac", bytes((5 << 3 | 0, 0x10)))], "object type 5"),  # HE-AAC
        ([("aac", bytes((0x12, 0x00)))], "channel configuration 0"),
    ],
)
def test_what_it_does_not_carry_is_refused_by_name(
    codecs: list[tuple[str, bytes]], why: str
) -> None:
    with pytest.raises(TsUnsupported, match=why):
        TsMuxer(codecs)
    assert TsMuxer.for_codecs(codecs) is None


def test_a_malformed_frame_is_left_out_and_the_counters_do_not_move(clip: Encoded) -> None:
    muxer = TsMuxer([("h264", clip.avcc_config), ("aac", clip.asc)])
    good = _segment_frames(clip, 0, 1, 0, True)
    bad_video = (0, Frame(b"\x00\x00\x10\x00\x65", 9_000, 9_000, False))  # length past the end
    too_long = (1, Frame(b"\x21" * 8200, 9_000, 9_000, True))  # over ADTS's 8191 bytes
    data = muxer.segment([*good[:5], bad_video, *good[5:], too_long])
    assert muxer.refused == 2
    assert "ADTS holds 8191" in muxer.last_refusal
    _check_packets(data)
    assert _demux(data) == _demux(
        TsMuxer([("h264", clip.avcc_config), ("aac", clip.asc)]).segment(good)
    )


def test_config_parsers(clip: Encoded) -> None:
    h264 = parse_avc_config(clip.avcc_config)
    assert h264.length_size == 4
    assert h264.parameter_sets == START_CODE + clip.sps + START_CODE + clip.pps
    aac = parse_audio_config(clip.asc)
    assert aac.adts.to_bytes(7, "big")[:3] == _adts(clip, b"")[:3]
