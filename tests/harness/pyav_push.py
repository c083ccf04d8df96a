"""Many RTMP cameras in one process: ``python -m tests.harness.pyav_push CLIP [--reconnect]``.

Publishes CLIP to every URL given in the environment (CAMSTREAM_HARNESS_RTMP_URL,
one per line: the URLs carry stream keys, so never argv), in a loop, paced at
real time, without re-encoding. One demux feeds every publisher, so tens of
cameras cost little CPU. Prints ``CONNECTED n`` once the first connections
are tried.

Timestamps continue across loops: each pass is shifted by the longest
stream's span, as ``ffmpeg -stream_loop`` does, so no stream's timestamps go
backwards and the shorter one gains at most a frame's gap.

A publisher whose connection fails is dropped (said so on stderr, by index,
never by URL). With ``--reconnect`` it comes back like a real camera: it
reconnects in the background every half second and resumes at the next
video keyframe. A receiver that stops reading without closing blocks them
all: this is a test camera, not a server.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import av

RETRY_SECONDS = 0.5


class _Publisher:
    """One RTMP connection and its output streams, keyed by the clip's stream index."""

    def __init__(self, url: str, templates: Sequence[Any]) -> None:
        self.out = av.open(url, "w", format="flv")
        try:
            self.streams = {t.index: self.out.add_stream_from_template(t) for t in templates}
            self.out.start_encoding()  # PyAV connects lazily; connect (and fail) now
        except BaseException:
            self.out.close()
            raise

    def close(self) -> None:
        try:
            self.out.close()
        except (av.error.FFmpegError, OSError):
            pass  # the peer is already gone


def _reconnect(
    index: int, url: str, templates: Sequence[Any], back: queue.Queue[tuple[int, _Publisher]]
) -> None:
    while True:
        try:
            back.put((index, _Publisher(url, templates)))
            print(f"publisher {index}: reconnected", file=sys.stderr, flush=True)
            return
        except av.error.FFmpegError:
            time.sleep(RETRY_SECONDS)


def push(clip: str, urls: Sequence[str], *, reconnect: bool) -> int:
    parent = os.getppid()  # leave with the test process, never linger as an orphan
    live: dict[int, _Publisher] = {}
    waiting: dict[int, _Publisher] = {}  # connected, starting at the next keyframe
    # Where a returning publisher starts (clip seconds after shifting): FLV
    # needs its first packet's timestamp to be its lowest.
    since: dict[int, float] = {}
    returned: queue.Queue[tuple[int, _Publisher]] = queue.Queue()
    with av.open(clip) as probe:
        templates = [s for s in probe.streams if s.type in ("video", "audio")]
        has_video = any(s.type == "video" for s in templates)

        def lost(index: int, why: str) -> None:
            print(f"publisher {index}: {why}", file=sys.stderr, flush=True)
            if reconnect:
                threading.Thread(
                    target=_reconnect, args=(index, urls[index], templates, returned), daemon=True
                ).start()

        for i, url in enumerate(urls):
            try:
                live[i] = _Publisher(url, templates)
            except av.error.FFmpegError as exc:
                lost(i, f"cannot connect: {exc.strerror}")
        print(f"CONNECTED {len(live)}", flush=True)
        start = time.monotonic()
        shift = 0.0  # seconds added to this pass's timestamps
        origin: float | None = None  # first dts of the clip: wall-clock pacing starts here
        while live or waiting or reconnect:
            with av.open(clip) as inp:
                streams = [s for s in inp.streams if s.type in ("video", "audio")]
                first: dict[int, float] = {}
                end: dict[int, float] = {}
                for pkt in inp.demux(*streams):
                    if pkt.dts is None or pkt.pts is None:
                        continue  # flush packets carry no data
                    tb = pkt.time_base
                    idx = pkt.stream.index
                    dts = float(pkt.dts * tb)
                    origin = dts if origin is None else origin
                    first.setdefault(idx, dts)
                    end[idx] = max(end.get(idx, dts), dts + float((pkt.duration or 0) * tb))
                    delay = start + (dts - origin + shift) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # real time, like a camera
                        if os.getppid() != parent:
                            return 0
                    while not returned.empty():
                        index, publisher = returned.get()
                        waiting[index] = publisher
                    if pkt.is_keyframe and (pkt.stream.type == "video" or not has_video):
                        since.update(dict.fromkeys(waiting, dts + shift))
                        live.update(waiting)  # a player can start here
                        waiting.clear()
                    offset = round(shift / tb)
                    new_dts, new_pts = pkt.dts + offset, pkt.pts + offset
                    for i in list(live):
                        if dts + shift < since.get(i, -1.0):
                            continue
                        # Reset the timestamps per publisher: mux may rescale in place.
                        pkt.time_base, pkt.dts, pkt.pts = tb, new_dts, new_pts
                        pkt.stream = live[i].streams[idx]
                        try:
                            live[i].out.mux(pkt)
                        except av.error.FFmpegError as exc:
                            live.pop(i).close()
                            lost(i, f"dropped: {exc.strerror}")
                shift += max(end[i] - first[i] for i in end)
    return 1  # every publisher is gone


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--reconnect"):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    urls = os.environ["CAMSTREAM_HARNESS_RTMP_URL"].split()
    return push(argv[0], urls, reconnect=len(argv) == 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
