"""FLV audio/video tag bodies → codec configurations and media packets.

RTMP carries media as FLV tag bodies (message types 8 = audio, 9 = video).
The RTMP connection (``servers/rtmp/connection.py``) keeps one ``FlvTagParser``
per publish and hands every audio/video message body to it; what comes out goes
to the publish's ``PublishSink`` (``publish``): a ``TrackConfig`` when a codec's sequence header
arrives (the avcC/hvcC/AudioSpecificConfig a muxer needs as extradata), a
``MediaPacket`` for each frame. Pure: no I/O.

Supported: H.264 (codec id 7), H.265 (codec id 12, the widespread
pre-standard extension, and Enhanced RTMP's ``hvc1``/``avc1`` FourCCs, which
OBS uses for HEVC), AAC (sound format 10, and Enhanced RTMP's ``mp4a``).
Anything else raises ``FlvError`` with a short message such as ``unsupported
video codec id 4``; the supervisor shows it as the stream's reason.

Choices made here, so the receiving source does not have to:
- Frames that arrive before their codec's sequence header are dropped: without
  extradata nothing downstream can use them.
- A sequence header identical to the last one is not reported again.
- FLV timestamps are 32-bit milliseconds and wrap after ~49.7 days; they are
  unwrapped (nearest interpretation to the previous timestamp) so ``dts_ms``
  keeps increasing across the wrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FlvError",
    "FlvTagParser",
    "MediaPacket",
    "TagRole",
    "TrackConfig",
    "parse_audio_specific_config",
    "tag_role",
]

TAG_AUDIO = 8
TAG_VIDEO = 9

_FRAME_KEY = 1
_FRAME_COMMAND = 5  # "video info/command frame": carries no picture
_CODEC_AVC = 7
_CODEC_HEVC = 12
_SOUND_AAC = 10
_SOUND_EX_HEADER = 9  # Enhanced RTMP: a FourCC follows

# Enhanced RTMP video packet types
_EX_SEQUENCE_START = 0
_EX_CODED_FRAMES = 1
_EX_CODED_FRAMES_X = 3  # coded frames without a composition time

_VIDEO_FOURCCS = {b"avc1": "h264", b"hvc1": "hevc"}
_AUDIO_FOURCCS = {b"mp4a": "aac"}

_AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
_WRAP = 1 << 32


class FlvError(ValueError):
    """A tag the worker cannot use (unsupported codec, malformed body)."""


@dataclass(frozen=True, slots=True)
class TrackConfig:
    """A codec's sequence header: what a muxer needs to set up the track."""

    kind: Literal["video", "audio"]
    codec: str  # "h264", "hevc", "aac" (PyAV codec names)
    extradata: bytes  # avcC / hvcC / AudioSpecificConfig
    sample_rate: int | None = None  # audio, parsed from AudioSpecificConfig
    channels: int | None = None


@dataclass(slots=True)
class MediaPacket:
    """One coded frame.

    Not frozen, unlike the configs: one is made per frame (~70 a second per
    stream), and a frozen dataclass's __init__ sets each field through
    object.__setattr__, about twice the cost. Nobody keeps or hashes it.
    """

    kind: Literal["video", "audio"]
    dts_ms: int  # FLV timestamp, unwrapped to keep increasing past 2**32 ms
    pts_ms: int  # dts + composition time offset (video); = dts for audio
    keyframe: bool  # always True for audio
    data: bytes  # AVCC/HVCC length-prefixed NALUs / raw AAC frame (no ADTS)


class _BitReader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise FlvError("truncated AudioSpecificConfig")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _sample_rate(bits: _BitReader) -> int:
    index = bits.read(4)
    if index == 15:
        return bits.read(24)
    if index >= len(_AAC_RATES):
        raise FlvError(f"invalid AAC sampling frequency index {index}")
    return _AAC_RATES[index]


def parse_audio_specific_config(asc: bytes) -> tuple[int, int | None]:
    """Sample rate and channel count from an MPEG-4 AudioSpecificConfig."""
    bits = _BitReader(asc)
    object_type = bits.read(5)
    if object_type == 31:
        object_type = 32 + bits.read(6)
    rate = _sample_rate(bits)
    channel_config = bits.read(4)
    if object_type in (5, 29):  # HE-AAC (SBR/PS) signalled explicitly: the output rate follows
        rate = _sample_rate(bits)
    # Config 0 = defined in a program config element; 7 is 7.1 (eight channels).
    channels = {0: None, 7: 8}.get(channel_config, channel_config)
    return rate, channels


def _si24(body: bytes, pos: int) -> int:
    value = (body[pos] << 16) | (body[pos + 1] << 8) | body[pos + 2]
    return value - (1 << 24) if value & 0x800000 else value


class FlvTagParser:
    """Per-publish parser: feed it tag bodies in arrival order."""

    def __init__(self) -> None:
        self._configs: dict[str, TrackConfig] = {}
        self._last_ts: int | None = None
        # Why audio is being ignored, if it is: a camera whose audio we cannot
        # carry still streams its video (only an audio-only publish fails).
        self.dropped_audio: str | None = None
        self._avc = False  # parse's fast path: an H.264 config is in
        self._aac = False  # parse's fast path: an AAC config is in, audio not dropped

    def _unwrap(self, timestamp_ms: int) -> int:
        raw = timestamp_ms & (_WRAP - 1)
        if self._last_ts is None:
            unwrapped = raw
        else:
            # Take the reading of the 32-bit value nearest to the previous one.
            delta = (raw - self._last_ts) % _WRAP
            if delta >= _WRAP // 2:
                delta -= _WRAP
            unwrapped = self._last_ts + delta
        self._last_ts = unwrapped
        return unwrapped

    def _config(self, config: TrackConfig) -> TrackConfig | None:
        if self._configs.get(config.kind) == config:
            return None
        self._configs[config.kind] = config
        self._ready()
        return config

    def _ready(self) -> None:
        """Which tracks the inline fast path of ``parse`` may take (after a config change)."""
        video = self._configs.get("video")
        self._avc = video is not None and video.codec == "h264"
        self._aac = "audio" in self._configs and self.dropped_audio is None

    def parse(
        self, tag_type: int, timestamp_ms: int, body: bytes
    ) -> TrackConfig | MediaPacket | None:
        """Parse one tag body (tag_type 8 audio, 9 video); None = nothing to pass on."""
        if not body:
            return None  # some publishers send empty tags as keep-alives
        # The common case inline, one call per frame instead of four (the
        # RTMP path's per-message cost, bench/README.md): a coded H.264 frame
        # (FLV header 0x17/0x27, packet type 1) or a raw AAC frame (0xAF..,
        # packet type 1) once their sequence headers came. It returns what
        # the general path below returns for the same body.
        head = body[0]
        last = self._last_ts
        if last is not None and len(body) > 5:
            if tag_type == TAG_VIDEO:
                if head & 0x8F == _CODEC_AVC and body[1] == 1 and self._avc:
                    frame_type = head >> 4
                    if frame_type != _FRAME_COMMAND:
                        delta = (timestamp_ms - last) & (_WRAP - 1)
                        dts = last + (delta - _WRAP if delta >= _WRAP // 2 else delta)
                        self._last_ts = dts
                        cts = (body[2] << 16) | (body[3] << 8) | body[4]
                        if cts & 0x800000:
                            cts -= 1 << 24
                        return MediaPacket(
                            "video", dts, dts + cts, frame_type == _FRAME_KEY, bytes(body[5:])
                        )
            elif tag_type == TAG_AUDIO and head >> 4 == _SOUND_AAC and body[1] == 1 and self._aac:
                delta = (timestamp_ms - last) & (_WRAP - 1)
                dts = last + (delta - _WRAP if delta >= _WRAP // 2 else delta)
                self._last_ts = dts
                return MediaPacket("audio", dts, dts, True, bytes(body[2:]))
        if tag_type == TAG_VIDEO:
            return self._video(timestamp_ms, body)
        if tag_type == TAG_AUDIO:
            return self._audio(timestamp_ms, body)
        raise FlvError(f"unknown FLV tag type {tag_type}")

    def _video(self, timestamp_ms: int, body: bytes) -> TrackConfig | MediaPacket | None:
        head = body[0]
        if head & 0x80:  # Enhanced RTMP header
            frame_type = (head >> 4) & 0x07
            if frame_type == _FRAME_COMMAND:
                return None
            if len(body) < 5:
                raise FlvError("truncated video tag")
            fourcc = bytes(body[1:5])
            codec = _VIDEO_FOURCCS.get(fourcc)
            if codec is None:
                name = fourcc.decode("ascii", errors="replace")
                raise FlvError(f"unsupported video codec {name!r}")
            packet_type = head & 0x0F
            if packet_type == _EX_SEQUENCE_START:
                return self._config(TrackConfig("video", codec, bytes(body[5:])))
            if packet_type == _EX_CODED_FRAMES:
                if len(body) < 8:
                    raise FlvError("truncated video tag")
                return self._frame(codec, timestamp_ms, _si24(body, 5), frame_type, body[8:])
            if packet_type == _EX_CODED_FRAMES_X:
                return self._frame(codec, timestamp_ms, 0, frame_type, body[5:])
            return None  # sequence end, metadata, multitrack...: nothing to mux
        frame_type = head >> 4
        codec_id = head & 0x0F
        if frame_type == _FRAME_COMMAND:
            return None
        if codec_id == _CODEC_AVC:
            codec = "h264"
        elif codec_id == _CODEC_HEVC:
            codec = "hevc"
        else:
            raise FlvError(f"unsupported video codec id {codec_id}")
        if len(body) < 5:
            raise FlvError("truncated video tag")
        packet_type = body[1]
        if packet_type == 0:
            return self._config(TrackConfig("video", codec, bytes(body[5:])))
        if packet_type == 1:
            return self._frame(codec, timestamp_ms, _si24(body, 2), frame_type, body[5:])
        return None  # 2 = end of sequence

    def _frame(
        self, codec: str, timestamp_ms: int, cts: int, frame_type: int, data: bytes
    ) -> MediaPacket | None:
        config = self._configs.get("video")
        if config is None or config.codec != codec or not data:
            return None
        dts = self._unwrap(timestamp_ms)
        return MediaPacket("video", dts, dts + cts, frame_type == _FRAME_KEY, bytes(data))

    def _audio(self, timestamp_ms: int, body: bytes) -> TrackConfig | MediaPacket | None:
        if self.dropped_audio is not None:
            return None
        try:
            return self._audio_tag(timestamp_ms, body)
        except FlvError as exc:
            if "video" not in self._configs:
                raise
            self.dropped_audio = str(exc)
            self._configs.pop("audio", None)
            self._ready()
            return None

    def _audio_tag(self, timestamp_ms: int, body: bytes) -> TrackConfig | MediaPacket | None:
        head = body[0]
        sound_format = head >> 4
        if sound_format == _SOUND_AAC:
            if len(body) < 2:
                raise FlvError("truncated audio tag")
            packet_type = body[1]
            payload = body[2:]
        elif sound_format == _SOUND_EX_HEADER:
            if len(body) < 5:
                raise FlvError("truncated audio tag")
            fourcc = bytes(body[1:5])
            if fourcc not in _AUDIO_FOURCCS:
                name = fourcc.decode("ascii", errors="replace")
                raise FlvError(f"unsupported audio codec {name!r}")
            packet_type = head & 0x0F  # 0 sequence start, 1 coded frames: same as AAC's
            payload = body[5:]
        else:
            raise FlvError(f"unsupported audio codec id {sound_format}")
        if packet_type == 0:
            asc = bytes(payload)
            rate, channels = parse_audio_specific_config(asc)
            return self._config(
                TrackConfig("audio", "aac", asc, sample_rate=rate, channels=channels)
            )
        if packet_type != 1 or "audio" not in self._configs or not payload:
            return None
        dts = self._unwrap(timestamp_ms)
        return MediaPacket("audio", dts, dts, True, bytes(payload))


class TagRole:
    """What a relay must know of a tag without parsing it (``tag_role``)."""

    OTHER = 0  # a frame that depends on earlier ones, audio, or something unknown
    VIDEO_CONFIG = 1  # a video sequence header (avcC/hvcC): needed before any frame
    AUDIO_CONFIG = 2  # an audio sequence header (AudioSpecificConfig)
    KEYFRAME = 3  # a video frame a decoder can start from


def tag_role(tag_type: int, body: bytes) -> int:
    """The role of an FLV tag body in a stream, from its first bytes only (for the edge).

    The ingest edge (camstream_worker/edge) keeps each codec's sequence
    header and starts a new owner at a keyframe; it reads only these bytes
    of a tag, never the frame. Unknown or short tags are OTHER.
    """
    if not body:
        return TagRole.OTHER
    head = body[0]
    if tag_type == TAG_VIDEO:
        if head & 0x80:  # Enhanced RTMP: frame type in bits 4-6, packet type in 0-3
            if head & 0x0F == _EX_SEQUENCE_START:
                return TagRole.VIDEO_CONFIG
            return TagRole.KEYFRAME if (head >> 4) & 0x07 == _FRAME_KEY else TagRole.OTHER
        if len(body) >= 2 and body[1] == 0 and head & 0x0F in (_CODEC_AVC, _CODEC_HEVC):
            return TagRole.VIDEO_CONFIG
        return TagRole.KEYFRAME if head >> 4 == _FRAME_KEY else TagRole.OTHER
    if tag_type == TAG_AUDIO:
        sound_format = head >> 4
        if sound_format == _SOUND_AAC and len(body) >= 2 and body[1] == 0:
            return TagRole.AUDIO_CONFIG
        if sound_format == _SOUND_EX_HEADER and head & 0x0F == 0:
            return TagRole.AUDIO_CONFIG
    return TagRole.OTHER
