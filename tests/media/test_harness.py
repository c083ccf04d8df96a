"""The media harness works on its own, before any worker exists.

Proves each real part the worker tests and the end-to-end suite lean on:
the GStreamer RTSP camera (codecs, auth, restart on the same port), the
ffmpeg RTMP pusher feeding ``ffmpeg -listen ... -f hls`` whose output
``hlscheck`` validates and hls.js in Chromium plays, the watcher's gap and
outage figures, and that the checkers do fail on bad input.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.harness import hlscheck, player
from tests.harness.cameras import (
    BlackHoleServer,
    GarbageClient,
    RtmpFanout,
    RtmpPusher,
    RtspCamera,
    free_port,
    make_clip,
    wait_for_listen,
)

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]

SIZE = "320x180"  # small frames: cameras stay cheap on a shared 2-core box


def _ffprobe_codecs(url: str, timeout: float = 30.0, transport: str = "tcp") -> list[str]:
    res = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_entries",
         "stream=codec_name", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-500:]
    return sorted(res.stdout.split())


class HlsReceiver:
    """``ffmpeg -listen 1`` taking one RTMP publisher and writing HLS (the stand-in worker)."""

    def __init__(self, outdir: Path, hls_time: int = 2) -> None:
        self.port = free_port()
        self.url = f"rtmp://127.0.0.1:{self.port}/live/harness-key"
        self.playlist = outdir / "index.m3u8"
        argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
        argv += ["-listen", "1", "-f", "flv", "-i", self.url, "-c", "copy", "-f", "hls"]
        argv += ["-hls_time", str(hls_time), "-hls_list_size", "6"]
        argv += ["-hls_flags", "delete_segments+program_date_time"]
        argv += ["-hls_segment_filename", str(outdir / "seg%05d.ts"), str(self.playlist)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        # No connect probe: ffmpeg -listen 1 would take it as its one client.
        wait_for_listen(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[HlsReceiver]:
    r = HlsReceiver(tmp_path)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def clip() -> Path:
    return make_clip(seconds=4, size=SIZE)


# -- RTSP camera --------------------------------------------------------------


def test_rtsp_camera_serves_each_mount_over_tcp() -> None:
    mounts = {"/cam1": "h264+aac", "/h265": "h265", "/video-only": "h264", "/mjpeg": "mjpeg"}
    with RtspCamera(mounts=mounts, size=SIZE) as cam:
        assert cam.port > 0
        assert _ffprobe_codecs(cam.url("/cam1")) == ["aac", "h264"]
        assert _ffprobe_codecs(cam.url("/h265")) == ["hevc"]
        assert _ffprobe_codecs(cam.url("/video-only")) == ["h264"]
        assert _ffprobe_codecs(cam.url("/video-only"), transport="udp") == ["h264"]
        assert _ffprobe_codecs(cam.url("/mjpeg")) == ["mjpeg"]
        # PyAV (the worker's library) reads it too, with advancing timestamps.
        with av.open(cam.url("/cam1"), options={"rtsp_transport": "tcp"}, timeout=20) as c:
            kinds: dict[str, list[float]] = {}
            for n, pkt in enumerate(c.demux()):
                if pkt.pts is not None:
                    kinds.setdefault(pkt.stream.type, []).append(float(pkt.pts * pkt.time_base))
                if n > 150:
                    break
        assert set(kinds) == {"video", "audio"}
        assert kinds["video"][-1] - kinds["video"][0] > 1.0


def test_rtsp_camera_auth_and_secret_hygiene() -> None:
    password = "pa$s w0rd:/@x"
    with RtspCamera(size=SIZE, user="admin", password=password) as cam:
        assert password not in Path(f"/proc/{cam.pid}/cmdline").read_text()
        assert password not in cam.url()
        for bad in (cam.url(), cam.url().replace("rtsp://", "rtsp://admin:wrong@")):
            res = subprocess.run(
                ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", bad],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert res.returncode != 0
            assert "401" in res.stderr
        assert _ffprobe_codecs(cam.url(credentials=True)) == ["aac", "h264"]
        assert password not in cam.log_tail(1000)


def test_rtsp_camera_crash_and_restart_keep_the_address() -> None:
    with RtspCamera(size=SIZE, mounts={"/cam1": "h264"}) as cam:
        url, pid = cam.url(), cam.pid
        cam.kill()
        assert not cam.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", cam.port), timeout=2).close()
        cam.start()
        assert cam.url() == url and cam.pid != pid
        assert _ffprobe_codecs(url) == ["h264"]


# -- RTMP into ffmpeg's HLS, checked and played --------------------------------


def test_rtmp_push_to_hls_validates_plays_and_is_watched(receiver: HlsReceiver, clip: Path) -> None:
    with RtmpPusher(receiver.url, clip=clip) as pusher:
        assert "harness-key" not in repr(pusher)
        pl = hlscheck.wait_for_segments(str(receiver.playlist), 2, timeout=30)
        assert pl.target_duration == 2
        with hlscheck.PlaylistWatcher({"cam": str(receiver.playlist)}) as watcher:
            result = player.play(str(receiver.playlist), 8, name="harness-rtmp-hls")
            report = hlscheck.validate(str(receiver.playlist), expect_codecs=("h264", "aac"))
        watched = watcher.results()["cam"]

    assert report.ok, report.problems
    assert all(s.program_date_time is not None for s in report.playlist.segments)
    assert all(p.stream("video").width == 320 for p in report.probes)  # type: ignore[union-attr]

    assert result.started, result.errors
    assert result.played >= 6.5, result.samples
    assert result.stalls == 0 and not result.fatal_errors, result.errors
    assert result.longest_freeze < 1.5
    assert result.video_size == (320, 180)
    assert result.screenshot_path is not None and result.screenshot_path.stat().st_size > 1000

    assert not watched.ever_unreachable, watched
    assert watched.new_segments >= 3
    assert watched.longest_gap < 2 * pl.target_duration + 1.5, watched
    assert watched.sequence_regressions == 0 and watched.skipped_sequences == 0
    assert watched.sequence_conflicts == 0


def test_watcher_sees_a_stalled_camera_and_an_unreachable_playlist(
    receiver: HlsReceiver, clip: Path
) -> None:
    server = player.HarnessServer(receiver.playlist.parent).start()
    try:
        url = server.media_url(receiver.playlist.name)
        with RtmpPusher(receiver.url, clip=clip) as pusher:
            hlscheck.wait_for_segments(url, 2, timeout=30)
            with hlscheck.PlaylistWatcher({"cam": url}, interval=0.25) as watcher:
                time.sleep(1)
                pusher.pause()  # the camera stalls with its connection open
                time.sleep(5)
                stalled = watcher.results()["cam"]
                pusher.resume()
                server.stop()  # the HTTP side goes away, as a dead worker would
                deadline = time.monotonic() + 5
                while not watcher.results()["cam"].ever_unreachable:
                    assert time.monotonic() < deadline, watcher.results()
                    time.sleep(0.1)
            final = watcher.stop()["cam"]
    finally:
        server.stop()
    assert stalled.longest_gap >= 4.0, stalled
    assert not stalled.ever_unreachable and stalled.failed_polls == 0, stalled
    assert final.ever_unreachable and final.failed_polls >= 1, final
    assert final.unreachable_seconds > 0


# -- the checkers can fail ------------------------------------------------------


def test_hlscheck_flags_a_missing_segment_unless_marked_discontinuous(
    receiver: HlsReceiver, clip: Path, tmp_path: Path
) -> None:
    with RtmpPusher(receiver.url, clip=clip):
        hlscheck.wait_for_segments(str(receiver.playlist), 4, timeout=40)
        snapshot = tmp_path / "snap"
        shutil.copytree(receiver.playlist.parent, snapshot, ignore=shutil.ignore_patterns("*.tmp"))
    pl = hlscheck.parse_media_playlist((snapshot / "index.m3u8").read_text())
    segs = pl.segments[:4]
    header = f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{pl.target_duration}\n"

    def playlist(marker: str) -> str:
        lines = [header]
        for i, s in enumerate(segs):
            if i == 2:
                continue  # a hole in the timeline
            if i == 3:
                lines.append(marker)
            lines.append(f"#EXTINF:{s.duration:.3f},\n{s.uri}\n")
        return "".join(lines)

    holed = snapshot / "holed.m3u8"
    holed.write_text(playlist(""))
    report = hlscheck.validate(str(holed), expect_codecs=("aac", "h264"))
    assert not report.ok
    assert any("gap" in p for p in report.problems), report.problems

    marked = snapshot / "marked.m3u8"
    marked.write_text(playlist("#EXT-X-DISCONTINUITY\n"))
    report = hlscheck.validate(str(marked), expect_codecs=("aac", "h264"))
    assert report.ok, report.problems
    assert report.playlist.discontinuity_positions == (2,)

    wrong = hlscheck.validate(str(marked), expect_codecs=("hevc",))
    assert any("codecs" in p for p in wrong.problems)


def test_watcher_counts_discontinuities_conflicts_and_regressions(tmp_path: Path) -> None:
    path = tmp_path / "index.m3u8"

    def publish(first: int, uris: list[str], disc_at: int | None = None) -> None:
        body = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        for i, uri in enumerate(uris):
            body += "#EXT-X-DISCONTINUITY\n" if i == disc_at else ""
            body += f"#EXTINF:2.0,\n{uri}\n"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body)
        os.replace(tmp, path)  # atomic, as a good writer does

    def settle(watcher: hlscheck.PlaylistWatcher) -> None:
        polls = watcher.results()["s"].polls
        while watcher.results()["s"].polls < polls + 2:
            time.sleep(0.02)

    publish(10, ["a10.ts", "a11.ts", "a12.ts"])
    with hlscheck.PlaylistWatcher({"s": str(path)}, interval=0.05) as watcher:
        settle(watcher)
        publish(11, ["a11.ts", "a12.ts", "b13.ts"], disc_at=2)  # a handoff: new writer
        settle(watcher)
        publish(13, ["b13.ts", "b14.ts", "c15.ts"])
        settle(watcher)
        publish(14, ["x14.ts", "c15.ts", "c16.ts"])  # 14 now names another segment
        settle(watcher)
        publish(3, ["r3.ts", "r4.ts"])  # restarted from scratch: players break
        settle(watcher)
    got = watcher.results()["s"]
    assert got.new_segments == 4  # 13, 14, 15, 16
    assert got.discontinuities == 1
    assert got.sequence_conflicts == 1
    assert got.sequence_regressions == 1
    assert got.skipped_sequences == 0
    assert not got.ever_unreachable


def test_player_reports_a_stream_that_does_not_exist(tmp_path: Path) -> None:
    with player.serve_directory(tmp_path) as server:
        result = player.play(
            server.media_url("missing.m3u8"), 3, startup_timeout=15, name="harness-missing"
        )
    assert not result.started
    assert result.fatal_errors, result.errors
    assert result.played == 0


def test_playlist_parser_reads_live_tags() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n"
        '#EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXT-X-MAP:URI="init.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:2.000,\na.m4s\n"
        "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:10.000+00:00\n"
        "#EXTINF:1.960,\nb.m4s\n#EXTINF:2.5,\nc.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:20.000Z\n#EXTINF:2,\nd.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:25.000Z\n#EXTINF:2,\ne.m4s\n"
    )
    pl = hlscheck.parse_media_playlist(text)
    assert [s.sequence for s in pl.segments] == [41, 42, 43, 44, 45]
    assert pl.discontinuity_positions == (1,)
    assert [s.discontinuity_sequence for s in pl.segments] == [3, 4, 4, 4, 4]
    assert pl.map_uri == "init.mp4"
    assert pl.segments[1].program_date_time is not None
    assert pl.segments[2].program_date_time is None
    assert hlscheck.playlist_problems(pl) == [
        "segment 43 EXTINF 2.500 exceeds target 2",
        "PROGRAM-DATE-TIME advances 5.000s from segment 44 to 45, EXTINF says 2.000s",
    ]
    with pytest.raises(hlscheck.HlsError):
        hlscheck.parse_media_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n")
    variants = hlscheck.parse_master_playlist(
        '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"\n'
        "low/index.m3u8\n"
    )
    assert variants[0].codecs == "avc1.4d401e,mp4a.40.2" and variants[0].resolution == "640x360"


def test_pyav_pusher_sends_h265_over_enhanced_rtmp() -> None:
    # Debian's ffmpeg 5.1 cannot put HEVC in FLV; the PyAV engine (FFmpeg 8)
    # can, and PyAV's own RTMP listener is the reader that understands it.
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/h265-key"
    seen: dict[str, object] = {}

    def listen() -> None:
        try:
            with av.open(url, options={"listen": "1"}, timeout=30) as c:
                seen["codecs"] = sorted(s.codec_context.name for s in c.streams)
                times: list[float] = []
                for pkt in c.demux(c.streams.video[0]):
                    if pkt.dts is not None:
                        times.append(float(pkt.dts * pkt.time_base))
                    if len(times) >= 75:
                        break
                seen["span"] = times[-1] - times[0]
        except Exception as exc:  # reported through `seen`, asserted below
            seen["error"] = repr(exc)

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    wait_for_listen(port)
    started = time.monotonic()
    with RtmpPusher(url, codec="h265", size=SIZE) as pusher:
        assert pusher.engine == "pyav"
        reader.join(60)
        elapsed = time.monotonic() - started
    assert "error" not in seen, seen
    assert seen["codecs"] == ["aac", "hevc"]
    # 75 frames at 25 fps: three seconds of media, paced at real time.
    assert 2.8 <= float(seen["span"]) <= 3.1  # type: ignore[arg-type]
    assert elapsed >= 2.5


def test_fanout_publishes_one_clip_to_many_receivers(tmp_path: Path, clip: Path) -> None:
    receivers = []
    try:
        for i in range(3):
            (tmp_path / f"r{i}").mkdir()
            receivers.append(HlsReceiver(tmp_path / f"r{i}"))
        dead = free_port()  # nobody listens: that publisher is dropped, the rest go on
        urls = [r.url for r in receivers] + [f"rtmp://127.0.0.1:{dead}/live/nobody-key"]
        with RtmpFanout(urls, clip=clip) as fanout:
            assert fanout.connected == 3
            assert "harness-key" not in repr(fanout) and "nobody-key" not in repr(fanout)
            for r in receivers:
                hlscheck.wait_for_segments(str(r.playlist), 2, timeout=40)
            report = hlscheck.validate(str(receivers[-1].playlist), expect_codecs=("aac", "h264"))
            assert "nobody-key" not in fanout.log_path.read_text()  # raw, unredacted log
    finally:
        for r in receivers:
            r.stop()
    assert report.ok, report.problems


# -- garbage ----------------------------------------------------------------------


def test_garbage_client_is_dropped_by_an_rtmp_listener(receiver: HlsReceiver) -> None:
    # ffmpeg's listener takes one connection; noise must make it hang up.
    closed = GarbageClient(receiver.port).bad_rtmp_version(hold=10)
    assert closed
    receiver.proc.wait(15)
    assert receiver.proc.returncode != 0


def test_black_hole_hangs_a_reader_and_slowloris_never_finishes() -> None:
    with BlackHoleServer() as hole:
        started = time.monotonic()
        res = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "2000000",
             f"rtsp://127.0.0.1:{hole.port}/cam1"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert res.returncode != 0
        assert time.monotonic() - started >= 1.5  # it waited for an answer that never came
        assert not GarbageClient(hole.port).slowloris(seconds=1.5, interval=0.2)
        assert hole.accepted == 2
