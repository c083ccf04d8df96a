"""Attacks 2 and 7 of issue 8, against a real standalone worker: what a stream's URL may reach.

A CameraStream's author picks the URL a worker connects to from inside the
network. Reproduced here, each against one worker process (`camstream run`)
with `--source-deny-cidrs` adding 127.0.0.2 (standing for an internal host,
a metadata service or a host of the author's) to the default deny-list:

- a URL straight at a denied address, as an IPv4-mapped IPv6 literal, over
  HTTPS (the proxy's CONNECT), over RTSP; the cloud metadata address itself;
- an allowed HTTP server that redirects to a denied address, or serves an HLS
  playlist whose segments are there (FFmpeg would follow both on its own);
- a playlist naming a local file (`file:///...`, `subfile,,...:`): FFmpeg
  would read the worker's disk and publish it;
- refused, 404, not media: the status would tell them apart (SSRF oracle).

Asserted: the denied host gets no connection at all, no local file is read,
every failing stream shows the same reason and message, the worker's log
says what really happened, and healthy streams (synthetic, HTTP, HLS over
HTTP, HTTPS: the same guard and whitelists) play throughout. Controls show that the redirect and the
playlist lure take FFmpeg alone to the denied host, so the assertions can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from camstream_worker.errors import UNREACHABLE
from camstream_worker.sources.policy import DEFAULT_DENIED_CIDRS
from tests.harness.cameras import free_port, make_clip
from tests.harness.recorders import MediaSite, Recorder
from tests.media.worker_process import WorkerProcess, camera_stream

pytestmark = [pytest.mark.security, pytest.mark.media]

SMALL = {"width": 160, "height": 90, "fps": 10, "bitrateKbps": 100, "audio": False}


def _playlist(*uris: str) -> str:
    items = "".join(f"#EXTINF:2.0,\n{uri}\n" for uri in uris)
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n{items}#EXT-X-ENDLIST\n"


class Attack:
    """The worker, the author's servers, and the stream names by what they try."""

    def __init__(self, worker: WorkerProcess, site: MediaSite, hole: Recorder, rtsp_hole: Recorder,
                 private: Path) -> None:  # fmt: skip
        self.worker, self.site, self.hole, self.rtsp_hole = worker, site, hole, rtsp_hole
        self.private = private


ATTACKS = (
    "metadata",
    "denied",
    "denied-mapped",
    "denied-https",
    "denied-rtsp",
    "redirect",
    "segments-elsewhere",
    "local-segment",
    "subfile-segment",
    "refused",
    "not-found",
    "not-media",
)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    root = tmp_path_factory.mktemp("egress")
    clip = make_clip(seconds=4, size="160x90", fps=10, bitrate_kbps=100, container="ts")
    private = root / "private" / "secret.ts"  # stands for any file on the worker's disk
    private.parent.mkdir()
    shutil.copy(clip, private)
    web = root / "web"
    web.mkdir()
    shutil.copy(clip, web / "clip.ts")
    (web / "page.html").write_text("<html><body>an intranet page</body></html>\n" * 50)
    hls = web / "hls"
    hls.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(clip), "-c", "copy", "-f", "hls",
         "-hls_time", "2", "-hls_list_size", "0", str(hls / "index.m3u8")],
        check=True, timeout=60,
    )  # fmt: skip
    (web / "local.m3u8").write_text(_playlist(f"file://{private}"))
    (web / "subfile.m3u8").write_text(_playlist(f"subfile,,start,0,end,0,,:{private}"))
    with (
        Recorder("127.0.0.2") as hole,
        Recorder("127.0.0.2", reply=b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n") as rtsp_hole,
    ):
        (web / "elsewhere.m3u8").write_text(_playlist(f"http://127.0.0.2:{hole.port}/seg0.ts"))
        redirects = {"/redirect.ts": f"http://127.0.0.2:{hole.port}/clip.ts"}
        with (
            MediaSite(web, redirects) as site,
            MediaSite(web, tls=root / "tls") as secure,
        ):
            urls = {
                "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                "denied": f"http://127.0.0.2:{hole.port}/clip.ts",
                "denied-mapped": f"http://[::ffff:127.0.0.2]:{hole.port}/clip.ts",
                "denied-https": f"https://127.0.0.2:{hole.port}/clip.ts",
                "redirect": f"{site.url}/redirect.ts",
                "segments-elsewhere": f"{site.url}/elsewhere.m3u8",
                "local-segment": f"{site.url}/local.m3u8",
                "subfile-segment": f"{site.url}/subfile.m3u8",
                "refused": f"http://127.0.0.1:{free_port()}/clip.ts",
                "not-found": f"{site.url}/missing.ts",
                "not-media": f"{site.url}/page.html",
            }
            manifests: list[dict[str, Any]] = [
                camera_stream(name, {"protocol": "http", "url": url, "stallTimeoutSeconds": 3})
                for name, url in urls.items()
            ]
            manifests += [
                camera_stream(
                    "denied-rtsp",
                    {"protocol": "rtsp", "url": f"rtsp://127.0.0.2:{rtsp_hole.port}/cam"},
                ),
                camera_stream("pattern", {"protocol": "synthetic", "synthetic": SMALL}),
                camera_stream("good-http", {"protocol": "http", "url": f"{site.url}/clip.ts"}),
                # HLS and HTTPS go through the same guard and whitelists, and play.
                camera_stream(
                    "good-hls", {"protocol": "http", "url": f"{site.url}/hls/index.m3u8"}
                ),
                camera_stream("good-https", {"protocol": "http", "url": f"{secure.url}/clip.ts"}),
            ]
            deny = ",".join([*DEFAULT_DENIED_CIDRS, "127.0.0.2/32"])
            worker = WorkerProcess(
                manifests,
                root / "worker",
                processes=1,
                extra_args=("--source-deny-cidrs", deny),
            ).start()
            try:
                yield Attack(worker, site, hole, rtsp_hole, private)
            finally:
                worker.stop()


def _failing_twice(worker: WorkerProcess, names: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Wait until every stream of `names` has failed to open at least twice."""
    deadline = time.monotonic() + timeout
    while True:
        streams = worker.streams()
        if all(streams[n]["reconnects"] >= 2 for n in names):
            return streams
        if time.monotonic() > deadline:
            late = {n: streams[n] for n in names if streams[n]["reconnects"] < 2}
            raise AssertionError(f"not retried twice in {timeout}s: {late}\n{worker.log()[-3000:]}")
        time.sleep(0.5)


def test_attacks_reach_nothing_and_read_alike_while_healthy_streams_go_on(attack: Attack) -> None:
    worker = attack.worker
    worker.wait_for("pattern", phase="Live", timeout=30)
    for good in ("good-http", "good-hls", "good-https"):
        worker.wait_for(good, phase="Live", timeout=30)
    before = worker.stream("pattern")["segments"]

    streams = _failing_twice(worker, ATTACKS, timeout=60)

    # One answer for all: refused, 404, an HTML page, a denied address, a redirect...
    answers = {(streams[n]["phase"], streams[n]["reason"], streams[n]["message"]) for n in ATTACKS}
    assert answers == {("Reconnecting", "SourceUnreachable", UNREACHABLE)}, {
        n: (streams[n]["reason"], streams[n]["message"]) for n in ATTACKS
    }
    # The denied host never saw a connection, however the URL led there.
    assert attack.hole.connections == 0, attack.hole.received()
    assert attack.rtsp_hole.connections == 0, attack.rtsp_hole.received()
    # ...though the author's own server was asked, so each lure was really tried.
    for path in ("/redirect.ts", "/elsewhere.m3u8", "/local.m3u8", "/subfile.m3u8"):
        assert path in attack.site.requests, attack.site.requests
    # No local file was read into a stream.
    for name in ("local-segment", "subfile-segment"):
        assert streams[name]["segments"] == 0 and streams[name]["bytes_in"] == 0
        assert not list((worker.hls_dir / "default" / name).glob("*.ts"))
    # The operator's log says what the status does not.
    log = worker.log()
    assert "169.254.169.254 is in the deny-list" in log
    assert "127.0.0.2 is in the deny-list" in log
    assert "ECONNREFUSED" in log or "ConnectionRefused" in log

    # Healthy streams go on while the attacks keep retrying, and nothing gets through.
    worker.wait_segments("pattern", 3, timeout=30)
    assert worker.stream("pattern")["segments"] >= before + 3
    later = worker.streams()
    assert sum(later[n]["reconnects"] for n in ATTACKS) > sum(
        streams[n]["reconnects"] for n in ATTACKS
    )
    for good in ("pattern", "good-http", "good-hls", "good-https"):
        assert later[good]["phase"] == "Live" and later[good]["segments"] >= 1, later[good]
    assert attack.hole.connections == attack.rtsp_hole.connections == 0
    assert worker.alive


def test_without_the_guards_ffmpeg_follows_the_lures_to_the_denied_host(attack: Attack) -> None:
    """The controls: where the worker's guards stopped the lures above, FFmpeg alone goes."""
    site = attack.site
    for lure in ("redirect.ts", "elsewhere.m3u8"):
        before = attack.hole.connections
        with pytest.raises(av.error.FFmpegError):
            av.open(f"{site.url}/{lure}", options={"rw_timeout": "3000000"}).close()
        assert attack.hole.connections == before + 1, lure
    # A local file named by an HTTP playlist: FFmpeg 8 refuses this one by itself
    # (its http protocol's default whitelist for nested opens has no `file`). The
    # worker's whitelist does not rely on that default; test_sources_files.py has
    # the local playlists FFmpeg does follow.
    with pytest.raises(av.error.InvalidDataError):
        av.open(f"{site.url}/local.m3u8", options={"rw_timeout": "3000000"}).close()
