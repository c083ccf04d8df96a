"""The SRT source's demuxer keeps what its probe read: the first keyframe is the first packet.

A publisher's MPEG-TS arrives in real time; PyAV probes about a second of it
to find the codecs. With `fflags nobuffer` FFmpeg dropped those packets, the
first keyframe among them, and a stream's first segment waited a GOP longer
on every publish, handoff and failover (#15).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import av
import pytest

from camstream_worker.sources import srt
from tests.harness.cameras import make_clip

pytestmark = pytest.mark.media


def _feed_in_real_time(sock: socket.socket, data: bytes, seconds: float) -> None:
    started = time.monotonic()
    rate = len(data) / seconds
    for at in range(0, len(data), 1316):  # SRT's live payload size
        delay = started + at / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            sock.sendall(data[at : at + 1316])
        except OSError:
            return


def _keyframes(clip: Path, count: int) -> list[float]:
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        return [
            float(p.dts * p.time_base)
            for p in container.demux(video)
            if p.is_keyframe and p.dts is not None
        ][:count]


def test_the_first_keyframe_outlives_the_probe() -> None:
    clip = make_clip(seconds=6.0, gop_seconds=1.0, container="ts")
    first, second = _keyframes(clip, 2)
    camera, worker = socket.socketpair()
    stopping = threading.Event()
    feeder = threading.Thread(
        target=_feed_in_real_time, args=(camera, clip.read_bytes(), 6.0), daemon=True
    )
    feeder.start()
    try:
        container = srt._open_mpegts(srt._SocketReader(worker, stopping))
        with container:
            video = container.streams.video[0]
            keys = []
            for packet in container.demux(video):
                if packet.is_keyframe and packet.dts is not None:
                    keys.append(float(packet.dts * packet.time_base))
                if len(keys) == 2:
                    break
    finally:
        stopping.set()
        camera.close()
        worker.close()
    assert keys == pytest.approx([first, second], abs=0.01)
