"""A synthetic camera: FFmpeg's lavfi test pattern, encoded in the worker.

Who calls this: kinds.py for `protocol: synthetic`, used by the demo and
tests when no camera is at hand. Unlike every other source it encodes (x264
or x265, ultrafast), so it costs real CPU: meant for a handful of streams.
"""

from __future__ import annotations

import functools
import io
import threading
import time
from typing import Any

import av

from camstream.spec import StreamSpec
from camstream_worker.sources.base import Context, PacketSink, run_in_own_thread


class SyntheticSource:
    pushed = False

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        self._options = spec.source.synthetic
        self._log_prefix = context.log_prefix

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        await run_in_own_thread(
            functools.partial(self._run, sink, stopping), name=f"synthetic {self._log_prefix}"
        )

    def _run(self, sink: PacketSink, stopping: threading.Event) -> None:
        o = self._options
        graph = f"testsrc2=size={o.width}x{o.height}:rate={o.fps}[out0]"
        if o.audio:
            graph += ";sine=frequency=440:sample_rate=48000[out1]"
        source = av.open(graph, format="lavfi")
        # The encoders live on a scratch muxer only so that start_encoding()
        # fills their codec parameters; the sink muxes into its own files.
        scratch = av.open(io.BytesIO(), "w", format="mpegts")
        try:
            video = scratch.add_stream("libx264" if o.codec == "h264" else "libx265", rate=o.fps)
            video.width, video.height, video.pix_fmt = o.width, o.height, "yuv420p"
            video.bit_rate = o.bitrate_kbps * 1000
            video.codec_context.gop_size = 2 * o.fps
            video.options = {"preset": "ultrafast", "tune": "zerolatency"}
            if o.codec == "hevc":
                video.options["x265-params"] = "log-level=error"
            encoders: list[Any] = [video]
            if o.audio:
                audio = scratch.add_stream("aac", rate=48000)
                audio.bit_rate = 64_000
                encoders.append(audio)
            scratch.start_encoding()
            sink.begin(encoders)
            started = time.monotonic()
            for packet in source.demux():
                if stopping.is_set():
                    return
                index = 0 if packet.stream.type == "video" else 1
                if packet.stream.type == "video" and packet.pts is not None:
                    # lavfi renders as fast as it can; a camera sends at its frame rate.
                    due = started + float(packet.pts * packet.time_base)
                    delay = due - time.monotonic()
                    if delay > 0 and stopping.wait(delay):
                        return
                for frame in packet.decode():
                    for encoded in encoders[index].encode(frame):
                        sink.packet(index, encoded)
        finally:
            source.close()
            scratch.close()
