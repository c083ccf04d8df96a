"""FLV tag bodies → TrackConfig / MediaPacket, and the errors for what is not supported."""

from __future__ import annotations

import pytest

from camstream_worker.protocols.rtmp.flv import (
    FlvError,
    FlvTagParser,
    MediaPacket,
    TrackConfig,
    parse_audio_specific_config,
)

AVCC = bytes.fromhex("014d401effe1001b674d401eda0141f9e10000030001000003003c0f162e4801000468ee3c80")
ASC_44100_STEREO = bytes.fromhex("1210")  # AAC-LC, index 4, 2 channels
ASC_48000_MONO = bytes.fromhex("1188")  # AAC-LC, index 3, 1 channel


def _avc(frame_type: int, packet_type: int, cts: int, data: bytes, codec_id: int = 7) -> bytes:
    return (
        bytes(((frame_type << 4) | codec_id, packet_type))
        + (cts & 0xFFFFFF).to_bytes(3, "big")
        + data
    )


def _aac(packet_type: int, data: bytes) -> bytes:
    return bytes((0xAF, packet_type)) + data  # AAC, 44 kHz flag, 16-bit, stereo flags


def _ready_parser() -> FlvTagParser:
    parser = FlvTagParser()
    parser.parse(9, 0, _avc(1, 0, 0, AVCC))
    parser.parse(8, 0, _aac(0, ASC_44100_STEREO))
    return parser


def test_avc_sequence_header_gives_h264_config() -> None:
    config = FlvTagParser().parse(9, 0, _avc(1, 0, 0, AVCC))
    assert config == TrackConfig("video", "h264", AVCC)


def test_aac_sequence_header_gives_rate_and_channels() -> None:
    config = FlvTagParser().parse(8, 0, _aac(0, ASC_44100_STEREO))
    assert config == TrackConfig("audio", "aac", ASC_44100_STEREO, sample_rate=44100, channels=2)


@pytest.mark.parametrize(
    ("asc", "rate", "channels"),
    [
        (ASC_44100_STEREO, 44100, 2),
        (ASC_48000_MONO, 48000, 1),
        # explicit frequency (index 15) 12345 Hz, 1 channel: 00010 1111 <24 bits> 0001
        (((0b00010_1111 << 28 | 12345 << 4 | 1) << 3).to_bytes(5, "big"), 12345, 1),
        # HE-AAC signalled explicitly: core 24 kHz, extension 48 kHz
        (bytes.fromhex("2b098800"), 48000, 1),
    ],
)
def test_audio_specific_config(asc: bytes, rate: int, channels: int) -> None:
    assert parse_audio_specific_config(asc) == (rate, channels)


def test_truncated_audio_specific_config() -> None:
    with pytest.raises(FlvError, match="truncated"):
        parse_audio_specific_config(b"\x12")


def test_video_frames_with_composition_time_and_keyframe_flag() -> None:
    parser = _ready_parser()
    key = parser.parse(9, 1000, _avc(1, 1, 80, b"\x00\x00\x00\x01\x65"))
    inter = parser.parse(9, 1040, _avc(2, 1, -40, b"\x00\x00\x00\x01\x41"))
    assert key == MediaPacket("video", 1000, 1080, True, b"\x00\x00\x00\x01\x65")
    assert inter == MediaPacket("video", 1040, 1000, False, b"\x00\x00\x00\x01\x41")


def test_aac_frame() -> None:
    packet = _ready_parser().parse(8, 23, _aac(1, b"\x21\x10"))
    assert packet == MediaPacket("audio", 23, 23, True, b"\x21\x10")


def test_frames_before_their_sequence_header_are_dropped() -> None:
    parser = FlvTagParser()
    assert parser.parse(9, 0, _avc(1, 1, 0, b"\x00\x00\x00\x01\x65")) is None
    assert parser.parse(8, 0, _aac(1, b"\x21")) is None


def test_repeated_identical_sequence_header_is_reported_once() -> None:
    parser = FlvTagParser()
    assert parser.parse(9, 0, _avc(1, 0, 0, AVCC)) is not None
    assert parser.parse(9, 0, _avc(1, 0, 0, AVCC)) is None
    assert parser.parse(9, 0, _avc(1, 0, 0, AVCC + b"\x00")) is not None  # a changed one is


def test_hevc_legacy_codec_id_12() -> None:
    parser = FlvTagParser()
    config = parser.parse(9, 0, _avc(1, 0, 0, b"hvcC-bytes", codec_id=12))
    assert config == TrackConfig("video", "hevc", b"hvcC-bytes")
    packet = parser.parse(9, 40, _avc(1, 1, 0, b"nal", codec_id=12))
    assert isinstance(packet, MediaPacket) and packet.keyframe


def test_enhanced_rtmp_hvc1() -> None:
    parser = FlvTagParser()
    start = bytes((0x80 | (1 << 4) | 0,)) + b"hvc1" + b"hvcC"
    assert parser.parse(9, 0, start) == TrackConfig("video", "hevc", b"hvcC")
    coded = bytes((0x80 | (1 << 4) | 1,)) + b"hvc1" + (33).to_bytes(3, "big") + b"nal"
    assert parser.parse(9, 100, coded) == MediaPacket("video", 100, 133, True, b"nal")
    coded_x = bytes((0x80 | (2 << 4) | 3,)) + b"hvc1" + b"nal2"
    assert parser.parse(9, 140, coded_x) == MediaPacket("video", 140, 140, False, b"nal2")


def test_enhanced_rtmp_unsupported_fourcc() -> None:
    with pytest.raises(FlvError, match="unsupported video codec 'av01'"):
        FlvTagParser().parse(9, 0, bytes((0x90,)) + b"av01" + b"x")


@pytest.mark.parametrize(("codec_id", "name"), [(2, "id 2"), (4, "id 4"), (5, "id 5")])
def test_unsupported_video_codec(codec_id: int, name: str) -> None:
    with pytest.raises(FlvError) as err:
        FlvTagParser().parse(9, 0, bytes(((1 << 4) | codec_id, 0, 0, 0, 0)))
    assert str(err.value) == f"unsupported video codec {name}"


def test_unsupported_audio_codec_mp3() -> None:
    with pytest.raises(FlvError) as err:
        FlvTagParser().parse(8, 0, bytes((0x2F,)) + b"\xff\xfb")
    assert str(err.value) == "unsupported audio codec id 2"


def test_command_frames_and_end_of_sequence_are_ignored() -> None:
    parser = _ready_parser()
    assert parser.parse(9, 0, bytes((0x57, 0))) is None  # frame type 5 with AVC
    assert parser.parse(9, 0, _avc(1, 2, 0, b"")) is None  # AVC end of sequence
    assert parser.parse(9, 0, b"") is None


@pytest.mark.parametrize(("tag", "body"), [(9, b"\x17\x01\x00"), (8, b"\xaf")])
def test_truncated_tags(tag: int, body: bytes) -> None:
    with pytest.raises(FlvError, match="truncated"):
        FlvTagParser().parse(tag, 0, body)


def test_timestamps_unwrap_past_32_bits() -> None:
    parser = _ready_parser()
    near_end = 0xFFFFFFFF - 20
    times = [near_end, (near_end + 40) & 0xFFFFFFFF, (near_end + 80) & 0xFFFFFFFF]
    dts = []
    for ts in times:
        packet = parser.parse(9, ts, _avc(2, 1, 0, b"nal"))
        assert isinstance(packet, MediaPacket)
        dts.append(packet.dts_ms)
    assert dts == [near_end, near_end + 40, near_end + 80]
    # a slightly late audio packet before the wrap stays before it
    late = parser.parse(8, near_end + 30, _aac(1, b"\x21"))
    assert isinstance(late, MediaPacket) and late.dts_ms == near_end + 30


def test_unusable_audio_beside_video_is_dropped_and_video_continues() -> None:
    parser = FlvTagParser()
    assert parser.parse(9, 0, _avc(1, 0, 0, AVCC)) is not None
    # An AudioSpecificConfig cut short (seen from a muxer fed ADTS without a filter).
    assert parser.parse(8, 0, _aac(0, b"")) is None
    assert parser.dropped_audio is not None and "AudioSpecificConfig" in parser.dropped_audio
    assert parser.parse(8, 20, _aac(1, b"\x21\x00")) is None  # later audio: ignored quietly
    assert parser.parse(8, 40, bytes((0x2F,)) + b"\xff\xfb") is None  # even another codec
    packet = parser.parse(9, 40, _avc(1, 1, 0, b"\x00\x00\x00\x01\x65"))
    assert isinstance(packet, MediaPacket) and packet.kind == "video"
