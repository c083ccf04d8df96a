"""Offline cost per packet of muxing RTMP's frames into MPEG-TS segments: PyAV vs tsmux.py.

The two paths the HLS writer has for a stream pushed over RTMP (issue 12,
part 3), on the frames of the worker benchmark's own clip (1 Mbit/s H.264 +
AAC, 2 s GOP, FLV as an RTMP publisher sends it), one 2 s segment at a time:

- baseline, what the worker did before: an `av.Packet` per frame (a copy
  into an FFmpeg buffer, time base, dts, pts, keyframe set through Cython),
  and a fresh PyAV mpegts muxer per segment with its streams from templates;
- tsmux: a light `Frame` per frame and `TsMuxer.segment` per segment.

Prints microseconds per packet for each, the ratio, and checks that both
segments hold the same number of bytes within 10 % (they are not identical:
PyAV adds an SDT and groups PCRs differently). One process, one core, in
turn, best of `--repeat` runs each.

    .venv/bin/python bench/tsmux_bench.py
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camstream_worker.media import coding_format  # noqa: E402
from camstream_worker.outputs.hls.tsmux import TsMuxer  # noqa: E402
from camstream_worker.packets import Frame  # noqa: E402
from tests.harness.cameras import make_clip  # noqa: E402

MILLISECONDS = Fraction(1, 1000)
Held = tuple[int, bytes, int, int, bool]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    clip = make_clip(seconds=args.seconds, bitrate_kbps=1000, gop_seconds=2, fps=25)
    with av.open(str(clip)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        owner = av.open(io.BytesIO(), "w", format="mpegts")
        templates = [owner.add_stream_from_template(s) for s in streams]
        segments: list[list[Held]] = []
        for packet in container.demux(streams):
            if packet.dts is None or packet.pts is None:
                continue
            index = streams.index(packet.stream)
            if (index == 0 and packet.is_keyframe) or not segments:
                segments.append([])
            segments[-1].append((index, bytes(packet), packet.dts, packet.pts, packet.is_keyframe))
    codecs = [(coding_format(t), bytes(t.codec_context.extradata or b"")) for t in templates]
    packets = sum(len(s) for s in segments)

    def baseline() -> int:
        size = 0
        for segment in segments:
            held = []
            for index, data, dts, pts, key in segment:
                frame = av.Packet(data)
                frame.time_base = MILLISECONDS
                frame.dts, frame.pts, frame.is_keyframe = dts, pts, key
                held.append((index, frame))
            buffer = io.BytesIO()
            with av.open(buffer, "w", format="mpegts") as muxer:
                outputs = [muxer.add_stream_from_template(t) for t in templates]
                for index, frame in held:
                    frame.stream = outputs[index]
                    muxer.mux(frame)
            size += len(buffer.getvalue())
        return size

    def ours() -> int:
        muxer = TsMuxer(codecs)
        size = 0
        for segment in segments:
            held = [(index, Frame(data, dts, pts, key)) for index, data, dts, pts, key in segment]
            size += len(muxer.segment(held))
        return size

    results = {}
    for name, run in (
        ("baseline (av.Packet + PyAV muxer)", baseline),
        ("tsmux (Frame + TsMuxer)", ours),
    ):
        best = float("inf")
        size = 0
        for _ in range(args.repeat):
            started = time.process_time()
            size = run()
            best = min(best, time.process_time() - started)
        results[name] = (best, size)
    print(f"{packets} packets in {len(segments)} segments ({clip.name}), best of {args.repeat}")
    print(f"{'path':36} {'us / packet':>12} {'MB written':>11}")
    for name, (seconds, size) in results.items():
        print(f"{name:36} {seconds / packets * 1e6:12.2f} {size / 1e6:11.2f}")
    (base_s, base_size), (our_s, our_size) = results.values()
    print(f"tsmux / baseline: CPU {our_s / base_s:.2f}x, bytes {our_size / base_size:.3f}x")
    if abs(our_size / base_size - 1) > 0.10:
        sys.exit("segment sizes differ by more than 10 %")


if __name__ == "__main__":
    main()
