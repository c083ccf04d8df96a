"""RTMP push as a source: a stream that waits for its camera to publish.

Who calls this: kinds.py makes one `RtmpPushSource` per `protocol: rtmp`
stream; the engine, as the RTMP listener's authorizer, calls `admit()` for a
publisher of the stream (the source checks the stream key), and the
supervisor calls `run()` for each session, as for any source.

Refused publishers are summarized: a stranger knocking with wrong keys gets
one log line and one status note per `REFUSAL_NOTE_INTERVAL`, however often
it knocks (the RTMP server already spaces its tries, servers/rtmp/keygate.py;
in a cluster each note is a status write).

Publishers hand us FLV tags (the RTMP connection and protocols/rtmp/flv.py
parse them). PyAV needs codec parameters to mux, and builds them best from the
codec's own sequence headers: `templates_from_configs` wraps the sequence
headers in a two-tag FLV file in memory and lets PyAV's FLV demuxer read them,
so the templates carry exactly what FFmpeg's own RTMP input would have
produced.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import threading
import time
from collections.abc import Sequence

import av

from camstream.spec import StreamSpec
from camstream_worker.errors import SecretError, SourceEnded, SourceError, UnsupportedMedia
from camstream_worker.packets import Frame
from camstream_worker.protocols.rtmp.flv import FlvError, MediaPacket, TrackConfig
from camstream_worker.sources.base import Context, PacketSink

log = logging.getLogger(__name__)

_FLV_VIDEO_CODEC_IDS = {"h264": 7, "hevc": 12}
# Between two sessions the supervisor briefly runs no session: a camera that
# reconnects then waits this long for the next one instead of being refused.
ATTACH_WAIT = 3.0
# At most one log line and one status note per stream this often about refused publishers.
REFUSAL_NOTE_INTERVAL = 30.0


class RtmpPushSource:
    # The camera decides when it comes: no opening deadline, quick retries.
    pushed = True

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        self._stream_key = spec.source.stream_key
        self._namespace = spec.key.namespace
        self._context = context
        self._log_prefix = context.log_prefix
        self._sink: PacketSink | None = None
        self._ended: asyncio.Future[str | None] | None = None
        self._session: _PublishSession | None = None
        self._listening = asyncio.Event()
        self._refused = 0  # publishers refused since the last note
        self._last_note = -REFUSAL_NOTE_INTERVAL

    async def admit(self, offered_key: str, peer: str) -> _PublishSession | None:
        """A publisher from `peer` offering `offered_key`: a session, or None to refuse it."""
        if self._stream_key is None:  # spec.py requires one; refuse rather than trust
            return None
        try:
            expected = await self._context.secrets.get(self._namespace, self._stream_key)
        except SecretError as exc:
            self._refuse(peer, str(exc), reason=None)
            return None
        if not hmac.compare_digest(expected.encode(), offered_key.encode()):
            self._refuse(peer, "wrong stream key", reason="WrongStreamKey")
            return None
        session = await self.attach_when_ready(wait_seconds=ATTACH_WAIT)
        if session is None:
            log.warning(
                "%srtmp publish from %s rejected: already publishing", self._log_prefix, peer
            )
        return session

    def _refuse(self, peer: str, why: str, *, reason: str | None) -> None:
        """Log and note a refused publisher, at most once per REFUSAL_NOTE_INTERVAL."""
        self._refused += 1
        now = time.monotonic()
        if now - self._last_note < REFUSAL_NOTE_INTERVAL:
            return
        count, self._refused, self._last_note = self._refused, 0, now
        host = peer.rpartition(":")[0] or peer  # the port changes with every try
        log.warning(
            "%srtmp publish refused: %s (%d refused since this was last logged; last from %s)",
            self._log_prefix,
            why,
            count,
            host,
        )
        if reason is not None:
            self._context.note(reason, f"refused a publisher: {why} (last from {host})")

    async def attach_when_ready(self, wait_seconds: float) -> _PublishSession | None:
        """attach(), waiting up to `wait_seconds` for the source to listen again.

        Between two sessions the supervisor briefly has no run() going; a
        camera reconnecting at that moment must not be turned away.
        """
        if self._sink is None:
            try:
                await asyncio.wait_for(self._listening.wait(), wait_seconds)
            except TimeoutError:
                return None
        return self.attach()

    def attach(self) -> _PublishSession | None:
        """A publisher with the right key arrived: give it a session, or None if not waiting.

        A newcomer replaces a current publisher (a camera reconnecting after a
        network cut must not wait for its half-dead connection to time out):
        the old session is detached and the sink begins a new session, which
        the playlist marks as a discontinuity.
        """
        if self._sink is None or self._ended is None:
            return None
        if self._session is not None:
            self._session.detached = True
        self._session = _PublishSession(self._sink, self._ended, self._log_prefix)
        return self._session

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        if self._stream_key is not None:
            # Resolved now so a missing key shows as Failed, not as a silent wait.
            await self._context.secrets.get(self._namespace, self._stream_key)
        ended: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._sink, self._ended, self._session = sink, ended, None
        self._listening.set()
        try:
            while not ended.done():
                if stopping.is_set():
                    if self._session is not None:
                        self._session.stopping = True
                    return
                await asyncio.wait({ended}, timeout=0.25)
            reason = ended.result()
            if reason is None:
                raise SourceEnded("the camera stopped publishing")
            if reason.startswith("unsupported"):
                raise UnsupportedMedia(
                    f"the camera publishes {reason.removeprefix('unsupported ')}"
                )
            raise SourceError(f"the publisher was disconnected: {reason}")
        finally:
            if self._session is not None:
                self._session.stopping = True
            self._sink = self._ended = self._session = None
            self._listening.clear()


class _PublishSession:
    """The PublishSink (protocols/rtmp/publish.py) of one accepted publish."""

    def __init__(
        self, sink: PacketSink, ended: asyncio.Future[str | None], log_prefix: str
    ) -> None:
        self._sink = sink
        self._ended = ended
        self._prefix = log_prefix
        self._configs: dict[str, TrackConfig] = {}
        self._current: tuple[TrackConfig, ...] = ()  # the configs now, video first
        self._begun_with: tuple[TrackConfig, ...] | None = None
        self._index: dict[str, int] = {}
        self.stopping = False
        self.detached = False

    def on_config(self, config: TrackConfig) -> None:
        self._configs[config.kind] = config
        # Kept as the tuple _begin compares, built here and not per packet.
        self._current = tuple(self._configs[k] for k in ("video", "audio") if k in self._configs)

    def on_metadata(self, metadata: dict[str, object]) -> None:
        pass  # codec facts come from the sequence headers, which cannot lie

    def on_packet(self, packet: MediaPacket) -> None:
        if self.detached:
            return  # replaced by a newer publisher of the same stream
        if self.stopping:
            # Raising makes the RTMP server drop this publisher (stall, handoff, delete).
            raise FlvError("publish ended by the worker")
        if self._current is not self._begun_with:  # a config came since: compare once
            if self._current == self._begun_with:
                self._begun_with = self._current  # the same again: no new session
            elif "video" not in self._configs or packet.kind != "video" or not packet.keyframe:
                return  # wait for a keyframe: the first segment must be playable alone
            else:
                self._begin(self._current, packet)
        index = self._index.get(packet.kind)
        if index is None:
            return
        # A light Frame, not an av.Packet: no copy into an FFmpeg buffer and no
        # Fraction per frame; the HLS writer muxes Frames itself (packets.py).
        self._sink.packet(
            index, Frame(packet.data, packet.dts_ms, packet.pts_ms, packet.keyframe)
        )

    def on_close(self, reason: str | None) -> None:
        if self.detached:
            return
        if not self._ended.done():
            self._ended.set_result(reason)

    def _begin(self, configs: tuple[TrackConfig, ...], keyframe: MediaPacket) -> None:
        container, templates = templates_from_configs(configs, keyframe)
        try:
            self._index = {t.type: i for i, t in enumerate(templates)}
            self._begun_with = configs
            self._sink.begin(templates)  # the writer copies what it needs
        finally:
            # Opening the FLV probe set up decoders: ~2 MB a stream, kept for nothing.
            container.close()


def templates_from_configs(
    configs: Sequence[TrackConfig], keyframe: MediaPacket | None = None
) -> tuple[av.container.InputContainer, list[av.stream.Stream]]:
    """PyAV streams described by sequence headers; valid until the container is closed.

    With the session's first keyframe the probe also learns the picture size
    (the fMP4 muxer needs it; the sequence header alone does not give it).
    """
    tags = b""
    has_audio = has_video = False
    for config in configs:
        if config.kind == "video":
            codec_id = _FLV_VIDEO_CODEC_IDS.get(config.codec)
            if codec_id is None:
                raise FlvError(f"unsupported video codec {config.codec}")
            body = bytes([0x10 | codec_id, 0, 0, 0, 0]) + config.extradata
            tags += _flv_tag(9, body)
            has_video = True
        else:
            body = (
                bytes([0xAF, 0]) + config.extradata
            )  # AAC, 44 kHz/16-bit/stereo flags (ignored for AAC)
            tags += _flv_tag(8, body)
            has_audio = True
    video = next((c for c in configs if c.kind == "video"), None)
    if keyframe is not None and video is not None:
        cts = (keyframe.pts_ms - keyframe.dts_ms).to_bytes(3, "big", signed=True)
        header = bytes([0x10 | _FLV_VIDEO_CODEC_IDS[video.codec], 1]) + cts
        tags += _flv_tag(9, header + keyframe.data)
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    header = b"FLV\x01" + bytes([flags]) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"
    container = av.open(
        io.BytesIO(header + tags), format="flv", options={"probesize": "32", "analyzeduration": "0"}
    )
    order = {"video": 0, "audio": 1}
    streams = sorted(container.streams, key=lambda s: order.get(s.type, 2))
    return container, streams  # type: ignore[return-value]  # av.open(format=flv) reads


def _flv_tag(tag_type: int, body: bytes) -> bytes:
    header = (
        bytes([tag_type]) + len(body).to_bytes(3, "big") + b"\x00\x00\x00\x00" + b"\x00\x00\x00"
    )
    return header + body + (len(body) + 11).to_bytes(4, "big")
