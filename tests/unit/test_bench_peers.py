"""The worker benchmark's pure helpers: MediaMTX's configuration, and playlist counting.

bench/worker_bench.py runs MediaMTX with `bench.mediamtx.render_config` and
counts a stream live when `bench.playlists.newest_segment` grows over the
window; a wrong setting or a miscount would make the peer baseline silently
cheaper or dearer, so both are pinned here. The real MediaMTX run is the
benchmark's own (not part of make test).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench import mediamtx, playlists


def _config(**overrides: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "rtmp_port": 19350,
        "hls_port": 18888,
        "hls_dir": Path("/dev/shm/bench-mediamtx-x/hls"),
    }
    settings.update(overrides)
    parsed = yaml.safe_load(mediamtx.render_config(**settings))  # type: ignore[arg-type]
    assert isinstance(parsed, dict)
    return parsed


def test_config_is_the_issues_hls_on_loopback() -> None:
    config = _config()
    assert config["hlsAlwaysRemux"] is True
    assert config["hlsVariant"] == "mpegts"
    assert config["hlsSegmentDuration"] == "2s"
    assert config["hlsSegmentCount"] == 6
    assert config["hlsDirectory"] == "/dev/shm/bench-mediamtx-x/hls"
    assert config["rtmpAddress"] == "127.0.0.1:19350"
    assert config["hlsAddress"] == "127.0.0.1:18888"
    assert config["paths"] == {"all_others": None}


def test_config_turns_off_every_other_server() -> None:
    config = _config()
    for server in ("rtsp", "webrtc", "srt", "moq", "api", "metrics", "pprof", "playback"):
        assert config[server] is False, server
    assert config["rtmp"] is True and config["hls"] is True


def test_config_takes_other_segment_settings() -> None:
    config = _config(segment_seconds=4, segment_count=3)
    assert (config["hlsSegmentDuration"], config["hlsSegmentCount"]) == ("4s", 3)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"rtmp_port": 0}, "rtmp_port"),
        ({"hls_port": 70000}, "hls_port"),
        ({"hls_port": 19350}, "must differ"),
        ({"segment_count": 2}, "segment_count"),
        ({"segment_seconds": 0}, "segment_seconds"),
        ({"hls_dir": Path("relative/hls")}, "hls_dir"),
        ({"hls_dir": Path('/tmp/a"b')}, "hls_dir"),
    ],
)
def test_config_refuses_what_mediamtx_would_not_take(
    overrides: dict[str, object], names: str
) -> None:
    with pytest.raises(mediamtx.ConfigError, match=names):
        _config(**overrides)


def test_urls_name_the_path_on_loopback() -> None:
    assert mediamtx.rtmp_url(rtmp_port=1935, path="live/s3") == "rtmp://127.0.0.1:1935/live/s3"
    assert (
        mediamtx.playlist_url(hls_port=8888, path="/live/s3/")
        == "http://127.0.0.1:8888/live/s3/index.m3u8"
    )


def test_binary_lives_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    assert mediamtx.binary() == tmp_path / "bin" / "mediamtx"


# -- playlists -----------------------------------------------------------------------

# MediaMTX's media playlist as it served one in a run (sessions shortened).
MEDIA = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-ALLOW-CACHE:NO
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:17
#EXT-X-PROGRAM-DATE-TIME:2026-12-03T12:48:06.727Z
#EXTINF:3.92000,
41110b42d414_main_seg17.ts?session=d444
#EXTINF:2.00000,
41110b42d414_main_seg18.ts?session=d444
"""

MULTIVARIANT = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS

#EXT-X-STREAM-INF:BANDWIDTH=1264587,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360
main_stream.m3u8?session=d444
"""


def test_newest_segment_is_sequence_plus_listed() -> None:
    assert playlists.newest_segment(MEDIA) == 19


def test_newest_segment_grows_by_one_per_segment_as_the_window_slides() -> None:
    slid = MEDIA.replace("SEQUENCE:17", "SEQUENCE:18").replace(
        "41110b42d414_main_seg17.ts?session=d444", "41110b42d414_main_seg19.ts?session=d444"
    )
    assert playlists.newest_segment(slid) == playlists.newest_segment(MEDIA) + 1


def test_newest_segment_of_an_empty_playlist_is_zero() -> None:
    assert playlists.newest_segment("#EXTM3U\n#EXT-X-TARGETDURATION:2\n") == 0


@pytest.mark.parametrize(
    "text",
    ["", "<html>404</html>", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x1\nseg.ts\n"],
)
def test_newest_segment_refuses_what_is_no_playlist(text: str) -> None:
    with pytest.raises(playlists.PlaylistError):
        playlists.newest_segment(text)


def test_variant_uri_resolves_against_the_playlist() -> None:
    base = "http://127.0.0.1:8888/live/s3/index.m3u8"
    assert (
        playlists.variant_uri(MULTIVARIANT, base)
        == "http://127.0.0.1:8888/live/s3/main_stream.m3u8?session=d444"
    )
    assert playlists.variant_uri(MEDIA, base) is None


def test_variant_uri_refuses_a_stream_inf_without_uri() -> None:
    with pytest.raises(playlists.PlaylistError):
        playlists.variant_uri("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "http://x/")
