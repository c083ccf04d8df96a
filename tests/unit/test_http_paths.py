"""Path validation of the worker's HTTP server (camstream_worker.servers.http.paths).

Pure: no server, no files. The server-level counterpart (real requests, real
symlinks) is tests/media/test_http_server.py.
"""

from __future__ import annotations

import posixpath
import string
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.servers.http import paths as http_paths
from camstream_worker.servers.http.paths import PathRejected, parse_hls_file, parse_static_file

ROOT = "/srv/hls/ns/cam"


@pytest.mark.parametrize(
    ("tail", "content_type", "cache"),
    [
        ("index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("seg-00042.ts", "video/mp2t", http_paths.SEGMENT_CACHE),
        ("720p/index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("360p/seg_7.m4s", "video/mp4", http_paths.SEGMENT_CACHE),
        ("init.mp4", "video/mp4", "no-cache"),
        ("thumbnail.jpg", "image/jpeg", "no-cache"),
        ("INDEX.M3U8", "application/vnd.apple.mpegurl", "no-cache"),
    ],
)
def test_hls_files_are_accepted_with_type_and_cache_policy(
    tail: str, content_type: str, cache: str
) -> None:
    wanted = parse_hls_file("default", "cam-1", tail)
    assert wanted.key == StreamKey("default", "cam-1")
    assert wanted.relative == PurePosixPath(tail)
    assert wanted.kind.content_type == content_type
    assert wanted.kind.cache_control == cache


def test_segments_are_cacheable_for_long_and_playlists_not_at_all() -> None:
    assert "max-age=86400" in http_paths.SEGMENT_CACHE
    assert parse_hls_file("a", "b", "x.ts").kind.is_playlist is False
    assert parse_hls_file("a", "b", "x.m3u8").kind.is_playlist is True


@pytest.mark.parametrize(
    "tail",
    [
        "",
        ".",
        "..",
        "../index.m3u8",
        "../../etc/passwd.ts",
        "a/../index.m3u8",
        "720p/../../x.ts",
        "/etc/passwd.ts",
        "//etc/x.ts",
        "a//b.ts",
        "a/b/c.ts",  # deeper than <rendition>/<file>
        ".hidden.ts",
        ".index.m3u8.tmp",
        "720p/.x.ts",
        "%2e%2e/x.ts",  # percent signs never reach a path (the URL is decoded first)
        "..%2fx.ts",
        "a\\..\\x.ts",
        "x.ts\n",
        "x.ts\x00.m3u8",
        "\uff58.ts",  # a fullwidth x
        "x .ts",
        "index.m3u8/",
        "x.py",
        "x",
        "secret.key",
        "x.ts.",
        "a" * 200 + ".ts",
    ],
)
def test_bad_file_paths_are_rejected(tail: str) -> None:
    with pytest.raises(PathRejected):
        parse_hls_file("default", "cam", tail)


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("..", "cam"),
        ("default", ".."),
        (".", "cam"),
        ("", "cam"),
        ("default", ""),
        ("Default", "cam"),
        ("default", "Cam"),
        ("-ns", "cam"),
        ("ns-", "cam"),
        ("default", "cam."),
        ("ns.x", "cam"),  # namespaces are DNS labels: no dots
        ("a/b", "cam"),
        ("default", "a/b"),
        ("n" * 64, "cam"),
        ("default", "c" * 254),
        ("default", "cam\n"),
    ],
)
def test_bad_stream_keys_are_rejected(namespace: str, name: str) -> None:
    with pytest.raises(PathRejected):
        parse_hls_file(namespace, name, "index.m3u8")


def test_kubernetes_names_are_accepted() -> None:
    assert parse_hls_file("n" * 63, "c" * 253, "index.m3u8").key.name == "c" * 253
    assert parse_hls_file("kube-system", "cam.front-door", "x.ts").key.name == "cam.front-door"


@given(st.text(max_size=60), st.text(max_size=20), st.text(max_size=20))
def test_whatever_is_accepted_stays_inside_the_stream_folder(
    tail: str, namespace: str, name: str
) -> None:
    try:
        wanted = parse_hls_file(namespace, name, tail)
    except PathRejected:
        return
    folder = posixpath.join("/srv/hls", wanted.key.namespace, wanted.key.name)
    joined = posixpath.normpath(posixpath.join(folder, wanted.relative.as_posix()))
    assert joined.startswith(folder + "/")
    assert joined == posixpath.join(folder, tail)  # nothing was normalised away
    assert not any(part.startswith(".") for part in wanted.relative.parts)


_component = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10).flatmap(
    lambda head: st.text(string.ascii_letters + string.digits + "._-", max_size=10).map(
        lambda rest: head + rest
    )
)


@given(
    st.lists(_component, min_size=0, max_size=1),
    _component,
    st.sampled_from(sorted(http_paths.HLS_FILE_KINDS)),
)
def test_every_well_formed_hls_path_is_accepted(folders: list[str], stem: str, suffix: str) -> None:
    tail = "/".join([*folders, stem + suffix])
    wanted = parse_hls_file("ns", "cam", tail)
    assert wanted.relative.as_posix() == tail
    assert wanted.kind is http_paths.HLS_FILE_KINDS[suffix]


@pytest.mark.parametrize("tail", ["hls.min.js", "player.js", "player.css"])
def test_static_files(tail: str) -> None:
    relative, kind = parse_static_file(tail)
    assert relative == PurePosixPath(tail)
    assert kind.content_type.startswith(("text/javascript", "text/css"))


@pytest.mark.parametrize(
    "tail", ["", "../http_server.py", "x/player.js", "http_server.py", ".player.js", "a.ts"]
)
def test_static_rejects_everything_but_scripts_and_styles(tail: str) -> None:
    with pytest.raises(PathRejected):
        parse_static_file(tail)
