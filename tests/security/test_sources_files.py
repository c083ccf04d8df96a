"""Attack 2 of issue 8, in standalone mode: a stream that reads the worker's own disk.

`protocol: file` is refused in a cluster (at admission, and by spec.py:
tests/unit/test_spec_rules.py, tests/cluster/test_chart_dryrun.py). In
standalone mode it stays, confined to `--file-root`. Reproduced against one
worker process with one file root: /etc/passwd, a path out of the root with
"..", a symbolic link out of it, FFmpeg's `subfile,,...:` prefix, another
stream's HLS playlist (which once went Live, republishing that stream), and
a playlist inside the root naming a file outside it (which FFmpeg alone
follows: the control below). Asserted: none of them reads a byte, each has a
clear reason on its stream, and a recording inside the root plays throughout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.harness.cameras import make_clip
from tests.media.worker_process import WorkerProcess, camera_stream

pytestmark = [pytest.mark.security, pytest.mark.media]


def _playlist(uri: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{uri}\n#EXT-X-ENDLIST\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, Path]]:
    base = tmp_path_factory.mktemp("files")
    root, outside = base / "recordings", base / "outside"
    root.mkdir()
    outside.mkdir()
    clip = make_clip(seconds=4, size="160x90", fps=10, bitrate_kbps=100, container="ts")
    shutil.copy(clip, root / "lobby.ts")
    shutil.copy(clip, outside / "private.ts")
    os.symlink(outside / "private.ts", root / "link.ts")
    (root / "evil.m3u8").write_text(_playlist(f"file://{outside / 'private.ts'}"))
    hls = base / "worker" / "hls"
    urls = {
        "lobby": str(root / "lobby.ts"),
        "passwd": "/etc/passwd",
        "dotdot": f"{root}/../outside/private.ts",
        "symlink": str(root / "link.ts"),
        "subfile": "subfile,,start,0,end,0,,:/etc/passwd",
        "republish": f"file://{hls}/default/lobby/index.m3u8",
        "playlist": str(root / "evil.m3u8"),
    }
    worker = WorkerProcess(
        [camera_stream(n, {"protocol": "file", "url": u}) for n, u in urls.items()],
        base / "worker",
        processes=1,
        extra_args=("--file-root", str(root)),
    ).start()
    try:
        yield worker, root
    finally:
        worker.stop()


def test_files_outside_the_root_are_refused_and_the_one_inside_plays(
    files: tuple[WorkerProcess, Path],
) -> None:
    worker, _ = files
    worker.wait_for("lobby", phase="Live", timeout=30)
    outside_root = "not a file inside the worker's file roots (camstream run --file-root)"
    for name in ("passwd", "dotdot", "symlink", "republish"):
        status = worker.wait_for(name, phase="Failed", timeout=20)
        assert (status["reason"], status["message"]) == ("SourceNotAllowed", outside_root), name
    playlist = worker.wait_for("playlist", phase="Failed", timeout=20)
    assert playlist["reason"] == "UnsupportedMedia"  # no playlist demuxer for files
    subfile = worker.wait_for("subfile", phase="Reconnecting", timeout=20)
    assert subfile["message"] == "no such file"  # a path, not FFmpeg's protocol prefix
    worker.wait_segments("lobby", 2, timeout=30)
    streams = worker.streams()
    for name in ("passwd", "dotdot", "symlink", "republish", "playlist", "subfile"):
        assert streams[name]["bytes_in"] == 0 and streams[name]["segments"] == 0, name
        assert not list((worker.hls_dir / "default" / name).glob("*.ts")), name
    assert "root:x:0:0" not in worker.log()


def test_without_the_guards_ffmpeg_follows_a_local_playlist_out_of_the_root(
    files: tuple[WorkerProcess, Path],
) -> None:
    """The control: FFmpeg alone reads the file outside the root that evil.m3u8 names."""
    _, root = files
    with av.open(str(root / "evil.m3u8")) as container:
        assert container.format.name == "hls"
        assert sum(1 for p in container.demux() if p.size) > 0
