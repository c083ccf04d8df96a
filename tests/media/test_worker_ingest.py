"""Each ingest path end to end: real cameras in, HLS out, checked by ffprobe.

A standalone worker process (`camstream run`) ingests from FFmpeg pushing
RTMP, GStreamer's RTSP server, a recording and the synthetic source; the
segments it writes are probed by ffprobe for codecs, durations near the
target and continuous timestamps.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness.cameras import RtmpPusher, RtspCamera, make_clip
from tests.harness.hlscheck import check_continuity, check_durations, probe_segment
from tests.media.worker_process import WorkerProcess, camera_stream, secret

pytestmark = pytest.mark.media


def assert_valid_hls(worker: WorkerProcess, name: str, video: str, audio: str | None) -> None:
    playlist = worker.playlist(name)
    assert playlist.target_duration == 2
    segments = playlist.segments[-3:]
    probes = [probe_segment(str(worker.segment_path(name, s.uri))) for s in segments]
    for probe in probes:
        assert probe.codecs[0] == video, probe.codecs
        assert (audio in probe.codecs) if audio else len(probe.codecs) == 1, probe.codecs
    assert check_durations(segments, probes) == []
    assert check_continuity(segments, probes) == []
    for segment in segments:
        assert 1.5 <= segment.duration <= 2.6, segment
        assert segment.program_date_time is not None


def test_rtmp_push_becomes_hls(start_worker) -> None:
    worker = start_worker(
        [
            camera_stream("door", {"protocol": "rtmp", "streamKeySecretRef": {"name": "door-key"}}),
            secret("door-key", streamKey="k3y-door"),
        ]
    )
    assert worker.stream("door")["phase"] == "Connecting"  # waiting for its camera
    with RtmpPusher(worker.rtmp_url("door", "k3y-door"), clip=True):
        worker.wait_for("door", phase="Live")
        status = worker.wait_segments("door", 4)
        assert_valid_hls(worker, "door", "h264", "aac")
    assert status["codecs"] == {"video": "h264", "audio": "aac"}
    assert status["bytes_in"] > 100_000
    assert "k3y-door" not in worker.log()


def test_rtmp_video_only_camera(start_worker) -> None:
    worker = start_worker(
        [
            camera_stream("yard", {"protocol": "rtmp", "streamKeySecretRef": {"name": "yard-key"}}),
            secret("yard-key", streamKey="yard-secret"),
        ]
    )
    with RtmpPusher(worker.rtmp_url("yard", "yard-secret"), clip=True, video_only=True):
        worker.wait_for("yard", phase="Live")
        worker.wait_segments("yard", 3)
        assert_valid_hls(worker, "yard", "h264", None)


def test_rtsp_pull_with_digest_credentials_over_tcp(start_worker) -> None:
    with RtspCamera(mounts={"/cam1": "h264+aac"}, user="viewer", password="p4ss-w0rd") as camera:
        worker = start_worker(
            [
                camera_stream(
                    "lobby",
                    {
                        "protocol": "rtsp",
                        "url": camera.url("/cam1"),
                        "credentialsSecretRef": {"name": "lobby-creds"},
                        # A test camera without TLS: the author says so (spec.py).
                        "allowInsecureCredentials": True,
                    },
                ),
                secret("lobby-creds", username="viewer", password="p4ss-w0rd"),
            ]
        )
        worker.wait_for("lobby", phase="Live")
        worker.wait_segments("lobby", 3)
        assert_valid_hls(worker, "lobby", "h264", "aac")
    assert "p4ss-w0rd" not in worker.log()
    assert "p4ss-w0rd" not in worker.get("/api/streams").decode()


def test_rtsp_h265_video_only_camera_over_udp(start_worker) -> None:
    with RtspCamera(mounts={"/h265": "h265"}) as camera:
        worker = start_worker(
            [
                camera_stream(
                    "dock", {"protocol": "rtsp", "url": camera.url("/h265"), "rtspTransport": "udp"}
                ),
            ]
        )
        worker.wait_for("dock", phase="Live", timeout=45)
        worker.wait_segments("dock", 2)
        assert worker.stream("dock")["codecs"]["video"] == "hevc"
        playlist = worker.playlist("dock")
        probe = probe_segment(str(worker.segment_path("dock", playlist.segments[-1].uri)))
        assert probe.codecs == ("hevc",)


def test_recording_and_synthetic_sources_play_at_real_time(start_worker, tmp_path: Path) -> None:
    clip = make_clip(seconds=6, container="mp4")
    worker = start_worker(
        [
            camera_stream("replay", {"protocol": "file", "url": str(clip)}),
            camera_stream(
                "pattern",
                {"protocol": "synthetic", "synthetic": {"width": 320, "height": 240, "fps": 25}},
            ),
        ],
        extra_args=("--file-root", str(clip.parent)),
    )
    worker.wait_for("pattern", phase="Live")
    worker.wait_for("replay", phase="Live")
    first = worker.stream("replay")["segments"]
    worker.wait_segments("pattern", 3)
    # Paced at real time: about one 2 s segment per 2 s, not the whole clip at once.
    assert worker.stream("replay")["segments"] - first <= 5
    assert_valid_hls(worker, "pattern", "h264", "aac")


def test_fmp4_segments_with_init_segment_play_in_a_browser(start_worker) -> None:
    from tests.harness.player import play

    worker = start_worker(
        [
            camera_stream(
                "lab",
                {"protocol": "rtmp", "streamKeySecretRef": {"name": "lab-key"}},
                hls={"segmentType": "fmp4"},
            ),
            secret("lab-key", streamKey="lab-k3y"),
        ]
    )
    with RtmpPusher(worker.rtmp_url("lab", "lab-k3y"), clip=True):
        worker.wait_for("lab", phase="Live")
        worker.wait_segments("lab", 3)
        playlist = worker.playlist("lab")
        assert playlist.map_uri is not None and playlist.map_uri.endswith(".mp4")
        assert playlist.version == 7
        init = worker.segment_path("lab", playlist.map_uri).read_bytes()
        segments = playlist.segments[-3:]
        probes = [
            probe_segment(str(worker.segment_path("lab", s.uri)), init=init) for s in segments
        ]
        for probe in probes:
            assert set(probe.codecs) == {"h264", "aac"}, probe.codecs
        assert check_continuity(segments, probes) == []
        assert probes[1].stream("video").start > probes[0].stream("video").start + 1.5
        result = play(f"{worker.base_url}/streams/default/lab/", 8, name="worker-fmp4-lab")
    assert result.started and result.fatal_errors == (), result
    assert result.played >= 5, result


def test_periodic_jpeg_thumbnail_from_rtmp_and_rtsp_cameras(start_worker) -> None:
    import av

    with RtspCamera(mounts={"/cam1": "h264+aac"}) as camera:
        worker = start_worker(
            [
                camera_stream(
                    "stills-rtsp",
                    {"protocol": "rtsp", "url": camera.url("/cam1")},
                    thumbnail={"enabled": True, "intervalSeconds": 2},
                ),
                camera_stream(
                    "stills-rtmp",
                    {"protocol": "rtmp", "streamKeySecretRef": {"name": "stills-key"}},
                    thumbnail={"enabled": True, "intervalSeconds": 2},
                ),
                secret("stills-key", streamKey="stills-k3y"),
            ]
        )
        with RtmpPusher(worker.rtmp_url("stills-rtmp", "stills-k3y"), clip=True):
            for name in ("stills-rtsp", "stills-rtmp"):
                worker.wait_for(name, phase="Live")
                status = worker.wait_segments(name, 2)
                assert status["thumbnail"] == f"/streams/default/{name}/thumbnail.jpg", status
                path = worker.segment_path(name, "thumbnail.jpg")
                first = path.stat().st_mtime
                with av.open(str(path)) as still:
                    frame = next(still.decode(video=0))
                    assert (frame.width, frame.height) == (640, 360)
                # Served with the right type, and refreshed every interval.
                assert worker.get(f"/streams/default/{name}/thumbnail.jpg")[:2] == b"\xff\xd8"
                worker.wait_segments(name, 2)
                assert path.stat().st_mtime > first


def test_transcoding_ladder_with_master_playlist(start_worker) -> None:
    import av

    from tests.harness.hlscheck import parse_master_playlist, parse_media_playlist
    from tests.harness.player import play

    ladder = [
        {"name": "360p", "height": 360, "videoBitrateKbps": 600},
        {"name": "180p", "height": 180, "videoBitrateKbps": 200},
    ]
    worker = start_worker(
        [
            camera_stream(
                "atrium",
                {"protocol": "rtmp", "streamKeySecretRef": {"name": "atrium-key"}},
                transcode={"enabled": True, "renditions": ladder},
            ),
            secret("atrium-key", streamKey="atrium-k3y"),
        ]
    )
    # 2.5 Mbit/s: well above the first guess for the source (twice the top rendition, 1.2 Mbit/s).
    pusher = RtmpPusher(
        worker.rtmp_url("atrium", "atrium-k3y"), clip=True, size="1280x720", bitrate_kbps=2500
    )
    with pusher:
        worker.wait_for("atrium", phase="Live")
        worker.wait_segments("atrium", 5)
        source = parse_media_playlist(
            (worker.hls_dir / "default/atrium/source/index.m3u8").read_text()
        )
        time.sleep(0.5)  # the master follows each segment through the event loop
        master = parse_master_playlist((worker.hls_dir / "default/atrium/index.m3u8").read_text())
        rates = [
            (worker.hls_dir / "default/atrium/source" / s.uri).stat().st_size * 8 / s.duration
            for s in source.segments[1:]  # the first may be gone already
            if (worker.hls_dir / "default/atrium/source" / s.uri).exists()
        ]
        # BANDWIDTH is the peak segment rate, measured (not the guess)
        assert max(rates) <= master[0].bandwidth <= 1.5 * max(rates), (master[0], rates)
        assert [v.uri for v in master] == [
            "source/index.m3u8",
            "360p/index.m3u8",
            "180p/index.m3u8",
        ]
        for folder, (width, height) in (
            ("360p", (640, 360)),
            ("180p", (320, 180)),
            ("source", (1280, 720)),
        ):
            media = worker.hls_dir / "default/atrium" / folder
            playlist = (media / "index.m3u8").read_text()
            segment = [line for line in playlist.splitlines() if line.endswith(".ts")][-1]
            probe = probe_segment(str(media / segment))
            assert probe.codecs == ("h264", "aac"), (folder, probe.codecs)
            with av.open(str(media / segment)) as container:
                video = container.streams.video[0].codec_context
                assert (video.width, video.height) == (width, height), folder
        result = play(f"{worker.base_url}/streams/default/atrium/", 8, name="worker-abr-atrium")
    assert result.started and result.fatal_errors == (), result


def test_http_recording_with_credentials_from_a_secrets_folder(start_worker, tmp_path) -> None:
    """An HTTP source behind Basic auth, its password in a mounted-Secret-like folder."""
    import base64
    import functools
    import http.server
    import threading

    # MPEG-TS: read front to back, as a live HTTP feed is (http.server has no Range support).
    clip = make_clip(seconds=6, container="ts")
    expected = "Basic " + base64.b64encode(b"viewer:folder-pass").decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(clip.parent))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "default" / "nvr").mkdir(parents=True)
    (secrets_dir / "default" / "nvr" / "username").write_text("viewer")
    (secrets_dir / "default" / "nvr" / "password").write_text("folder-pass\n")
    try:
        url = f"http://127.0.0.1:{server.server_port}/{clip.name}"
        worker = start_worker(
            [
                camera_stream(
                    "nvr",
                    {
                        "protocol": "http",
                        "url": url,
                        "credentialsSecretRef": {"name": "nvr"},
                        "allowInsecureCredentials": True,  # a loopback test server, no TLS
                    },
                )
            ],
            extra_args=("--secrets-dir", str(secrets_dir)),
        )
        worker.wait_for("nvr", phase="Live")
        worker.wait_segments("nvr", 2)
        assert_valid_hls(worker, "nvr", "h264", "aac")
        assert "folder-pass" not in worker.log()
    finally:
        server.shutdown()


def test_h265_over_enhanced_rtmp_and_old_segments_are_deleted(start_worker) -> None:
    worker = start_worker(
        [
            camera_stream(
                "garage",
                {"protocol": "rtmp", "streamKeySecretRef": {"name": "garage-key"}},
                hls={"windowSegments": 3},
            ),
            secret("garage-key", streamKey="garage-k3y"),
        ]
    )
    with RtmpPusher(worker.rtmp_url("garage", "garage-k3y"), codec="h265", clip=True):
        worker.wait_for("garage", phase="Live", timeout=45)
        status = worker.wait_segments("garage", 8, timeout=60)
        assert status["codecs"]["video"] == "hevc"
        playlist = worker.playlist("garage")
        assert len(playlist.segments) == 3
        on_disk = sorted((worker.hls_dir / "default" / "garage").glob("seg*.ts"))
        # The window plus a few retired segments for players holding an older playlist.
        assert len(on_disk) <= 3 + 3, on_disk
        assert not (worker.hls_dir / "default" / "garage" / "seg0.ts").exists()


def test_twenty_rtsp_cameras_on_one_engine_process(start_worker) -> None:
    """Pulled cameras each hold a thread for their whole session: a shared
    thread pool (six threads on two cores) once queued all but six of them."""
    # One mount (one pipeline) per camera, as twenty real cameras would be. With
    # one mount shared by twenty clients setting up at once, the test camera
    # once stopped accepting connections in CI (every client got ECONNREFUSED;
    # the cause inside GStreamer's RTSP server was not found).
    names = [f"pull-{i}" for i in range(20)]
    mounts = {f"/{n}": "h264" for n in names}
    with RtspCamera(mounts=mounts, size="192x108", fps=10, bitrate_kbps=100) as camera:
        worker = start_worker(
            [camera_stream(n, {"protocol": "rtsp", "url": camera.url(f"/{n}")}) for n in names],
            processes=1,
        )
        for name in names:
            assert camera.running, f"the test camera exited:\n{camera.log_tail()}"
            worker.wait_for(name, phase="Live", timeout=60)
