"""A pulled stream handed over twice while hls.js plays it, without a cluster.

The churn suite plays through a rolling restart of five workers (~15 min);
this puts the same cut-overs in front of a real player in about a minute, at
the HLS level: two writers (an old and a new owner) pull one GStreamer RTSP
camera each, make before break, numbered as a handoff numbers them
(sequence.py), and a loopback server stands for the ring's routing: it serves
the old owner's folder until the new owner has a playlist and a second has
passed (the confirmation and the ring write), then the new owner's. Then the
new owner fences the old one, as the cluster agent does once the ring says
it serves: the old writer stops publishing and says its last number, and the
new one, which had published no playlist, renumbers to follow it. Until its
playlist is there (at most its next cut) the server holds a playlist request,
as a worker does for a stream it runs. The stream goes out to a fallback and
back home, as in a rolling restart.

Each switch comes right after the old owner published a segment, so the
player has most likely not seen that one: its next playlist, from the new
owner, must list it (the old owner's tail, handed over by the fence,
sequence.TAIL_SEGMENTS). Without the tail hls.js got a playlist one number
past a segment it never loaded, left a segment's hole in its buffer and
waited on it (4 `waiting` events, a 2 s stall, 2026-12-04).

What it holds the writers to: the picture never goes back and hls.js never
waits (no `waiting` event). Without the fence a new owner outruns the old
one's numbers by a segment or two, and hls.js, placing a playlist it cannot
overlap by sequence number by number times target duration, leaves a hole
of that many segments in its buffer and waits on it (0.2-1.9 s). (With
discontinuity numbers counted from 0 in every writer, the hand-back reused
the fallback's number: hls.js froze 2.0 s, then replayed from 24 s back.)
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest

from camstream import wire
from camstream.spec import HlsOptions
from camstream_worker.cluster.desired import next_sequence_from_playlist
from camstream_worker.outputs.hls.sequence import FirstNumber, Said, SequenceStart, by_clock
from camstream_worker.outputs.hls.writer import HlsWriter
from camstream_worker.packets import Packet
from camstream_worker.sources.demux import remux_input
from tests.harness.cameras import LOOPBACK, RtspCamera
from tests.harness.player import play

pytestmark = pytest.mark.media

SEGMENT = 2  # the chart's defaults
OPTIONS = dataclasses.replace(HlsOptions(), segment_seconds=SEGMENT, window_segments=6)
CONFIRM_SECONDS = 1.0  # the new owner live -> the ring says so -> requests go there
BETWEEN_HANDOFFS = 15.0
HOLD_SECONDS = 4.0  # a playlist request waits this long for a playlist to be written
WATCH = 55.0  # both handoffs (~6 s each) and 10 s after the hand-back


class Owner:
    """One worker's copy of the stream: its own RTSP session into its own writer."""

    def __init__(self, folder: Path, url: str, start: SequenceStart, handed: bool) -> None:
        self.folder = folder
        self._writer = HlsWriter(
            folder,
            OPTIONS,
            start_sequence=FirstNumber(start),
            discontinuity_on_first=handed,
            await_fence=handed,
        )
        self._stopping = threading.Event()
        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "analyzeduration": "1000000"}
        self._thread = threading.Thread(
            target=self._read, args=(lambda: av.open(url, options=options),), daemon=True
        )
        self._thread.start()

    def _read(self, open_input: Any) -> None:
        try:
            remux_input(open_input, self, self._stopping)
        except Exception:  # the camera went away with the test; the writer keeps its files
            if not self._stopping.is_set():
                raise

    def begin(self, templates: Any) -> None:
        self._writer.begin(templates)

    def packet(self, index: int, packet: Packet) -> None:
        self._writer.write(index, packet)

    def fence(self) -> Said | None:
        return self._writer.fence()

    def follow_on(self, said: Said) -> None:
        self._writer.follow_on(said.last, said.end, said.tail)

    @property
    def playlist(self) -> Path:
        return self.folder / wire.PLAYLIST

    def stop(self) -> None:
        """The stream moved away: what is held is dropped, as a real release does."""
        self._stopping.set()
        self._thread.join(10)
        self._writer.end(keep_last=False)


class Routing:
    """Serves `<any path>/<file>` from the serving owner's folder."""

    def __init__(self) -> None:
        self.serving: Path | None = None
        routing = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                folder = routing.serving
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                if folder is not None and name == wire.PLAYLIST:
                    deadline = time.monotonic() + HOLD_SECONDS
                    while not (folder / name).exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                try:
                    body = (folder / name).read_bytes() if folder is not None else None
                except OSError:
                    body = None
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                kind = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
                self.send_header("Content-Type", kind)
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/live/{wire.PLAYLIST}"

    def __enter__(self) -> Routing:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _wait_for_segment(folder: Path, timeout: float = 30.0) -> None:
    """Until the owner has cut a segment (a new owner publishes no playlist yet)."""
    deadline = time.monotonic() + timeout
    while not list(folder.glob("seg*.ts")):
        assert time.monotonic() < deadline, f"no segment in {folder} within {timeout} s"
        time.sleep(0.1)


def _wait_for_listed(path: Path, count: int, timeout: float = 30.0) -> None:
    """Until the playlist lists `count` segments."""
    deadline = time.monotonic() + timeout
    while not path.exists() or path.read_text().count("#EXTINF") < count:
        assert time.monotonic() < deadline, f"not {count} segments in {path} within {timeout} s"
        time.sleep(0.1)


def _wait_for_a_new_segment(playlist: Path, timeout: float = 10.0) -> None:
    listed = playlist.read_text().count("#EXTINF")
    first = next_sequence_from_playlist(playlist.read_text())
    deadline = time.monotonic() + timeout
    while next_sequence_from_playlist(playlist.read_text()) == first:
        assert time.monotonic() < deadline, f"no new segment after {listed} in {timeout} s"
        time.sleep(0.02)


def _hand_over(source: Owner, folder: Path, url: str, routing: Routing) -> Owner:
    """Make before break: start the target numbered past the source, switch,
    fence the source and follow on from it, stop the source.

    The switch comes right after the source published a segment, which the
    player (refreshing once per target duration) has then most likely not
    seen: its next playlist comes from the target, which must list it."""
    now = time.time()
    source_next = next_sequence_from_playlist(source.playlist.read_text())
    assert source_next is not None
    target = Owner(folder, url, SequenceStart(source_next, ahead_of=now), handed=True)
    _wait_for_segment(target.folder)
    time.sleep(CONFIRM_SECONDS)
    _wait_for_a_new_segment(source.playlist)
    routing.serving = target.folder
    fenced = source.fence()
    assert fenced is not None
    target.follow_on(fenced)
    source.stop()
    return target


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    # The churn suite's cameras: small, 1 s keyframe interval, one encoder per mount.
    with RtspCamera(
        mounts={"/cam0": "h264"}, size="192x108", fps=10, bitrate_kbps=100, gop_seconds=1.0
    ) as cam:
        yield cam


def test_a_pulled_stream_handed_out_and_back_never_goes_back(
    camera: RtspCamera, tmp_path: Path
) -> None:
    url = camera.url("/cam0")
    now = time.time()
    home = Owner(tmp_path / "home", url, SequenceStart(by_clock(now, SEGMENT), at=now), False)
    # hls.js starts three segments behind the live edge: with fewer listed it
    # starts at the edge and waits a moment at each new segment, which is no
    # handoff's doing.
    _wait_for_listed(home.playlist, 3)
    with Routing() as routing:
        routing.serving = home.folder
        results: dict[str, Any] = {}
        viewer = threading.Thread(
            target=lambda: results.update(
                r=play(
                    routing.url,
                    WATCH,
                    name="handoff-pulled",
                    probe="window.__camstream.events",  # when each `waiting` came
                )
            )
        )
        viewer.start()
        time.sleep(BETWEEN_HANDOFFS)
        fallback = _hand_over(home, tmp_path / "fallback", url, routing)
        time.sleep(BETWEEN_HANDOFFS)
        back = _hand_over(fallback, tmp_path / "home-again", url, routing)
        viewer.join(WATCH + 60)
        back.stop()
    result = results["r"]
    assert result.started and not result.fatal_errors, result
    back_steps = [(a, b) for (_, a), (_, b) in itertools.pairwise(result.samples) if b < a - 0.05]
    assert back_steps == [], f"the picture went back: {back_steps}"
    assert result.stalls == 0, (result.stalls, result.probe)
    assert result.longest_freeze <= SEGMENT, result
