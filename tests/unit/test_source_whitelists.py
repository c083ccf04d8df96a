"""The protocol and demuxer whitelists name only what exists and only what each kind needs.

The names are checked against the FFmpeg inside the PyAV wheel (its list of
input protocols, read from libavformat itself, and its demuxers): a typo
would make FFmpeg refuse every input of that kind, or, worse, a name that
stands for nothing would hide that a needed protocol is missing.
tests/security/test_sources_*.py open real inputs with these options.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import av
import pytest

from camstream_worker.sources import whitelists


def ffmpeg_input_protocols() -> set[str]:
    libs = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libavformat*.so*"))
    assert libs, "the PyAV wheel's libavformat was not found"
    lib = ctypes.CDLL(str(libs[0]))
    lib.avio_enum_protocols.restype = ctypes.c_char_p
    lib.avio_enum_protocols.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    opaque = ctypes.c_void_p(None)
    names = set()
    while name := lib.avio_enum_protocols(ctypes.byref(opaque), 0):
        names.add(name.decode())
    return names


PROTOCOLS = ffmpeg_input_protocols()


def test_ffmpeg_really_carries_the_dangerous_protocols() -> None:
    # So that leaving them out of the whitelists means something.
    assert {"file", "subfile", "concat", "data", "crypto", "http", "tls"} <= PROTOCOLS


@pytest.mark.parametrize("kind", ["rtsp", "http", "file"])
def test_every_whitelisted_protocol_exists(kind: whitelists.Kind) -> None:
    names = set(whitelists.PROTOCOLS[kind].split(","))
    assert names <= PROTOCOLS, names - PROTOCOLS


@pytest.mark.parametrize("kind", ["rtsp", "http"])
def test_network_sources_can_read_nothing_local(kind: whitelists.Kind) -> None:
    names = set(whitelists.PROTOCOLS[kind].split(","))
    assert not names & whitelists.LOCAL_PROTOCOLS
    assert {"file", "subfile", "concat", "data"} <= whitelists.LOCAL_PROTOCOLS


def test_each_kind_has_what_it_needs() -> None:
    assert set(whitelists.PROTOCOLS["rtsp"].split(",")) == {"tcp", "udp", "rtp", "tls"}
    assert {"http", "https", "tcp", "tls", "httpproxy"} <= set(
        whitelists.PROTOCOLS["http"].split(",")
    )
    assert whitelists.PROTOCOLS["file"] == "fd"  # file.py opens the path itself


@pytest.mark.parametrize("kind", ["rtsp", "http", "file"])
def test_every_whitelisted_format_is_a_demuxer(kind: whitelists.Kind) -> None:
    for name in whitelists.FORMATS[kind].split(","):
        assert av.ContainerFormat(name, "r").name, name


def test_no_playlist_demuxer_for_local_files() -> None:
    formats = set(whitelists.FORMATS["file"].split(","))
    assert not formats & {"hls", "concat", "image2", "tty"}
    assert "concat" not in whitelists.FORMATS["http"].split(",")
    assert whitelists.options_for("rtsp") == {
        "protocol_whitelist": "tcp,udp,rtp,tls",
        "format_whitelist": "rtsp",
    }
