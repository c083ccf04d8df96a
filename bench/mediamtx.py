"""MediaMTX as the worker benchmark's peer baseline: its binary and its configuration.

Who calls this: `bench/worker_bench.py` starts one MediaMTX process per N with
the configuration rendered here, beside camstream and FFmpeg and with the same
senders (issue 12). The binary is built from the Go module proxy by
`scripts/install-mediamtx.sh` (run by `make bench`) into the camstream cache.

The configuration is the one issue 12 measured: RTMP in on one loopback port,
HLS out on another, `hlsAlwaysRemux: yes` (every published stream is muxed
whether or not anyone reads it, as camstream and FFmpeg do), the MPEG-TS
variant, 2 s segments and 6 in the playlist, and the segments written to a
directory (tmpfs, like camstream's) rather than kept in RAM. Every other server
(RTSP, WebRTC, SRT, MoQ, the API, metrics, pprof, playback) is off so that
MediaMTX binds only the two ports it is given and costs nothing for them.
Publishing and reading are open to any client, as for the other receivers:
only loopback addresses are bound.

Pure functions; no process is started here.
"""

from __future__ import annotations

import os
from pathlib import Path

VERSION = "v1.20.1"
SEGMENT_SECONDS = 2
SEGMENT_COUNT = 6


class ConfigError(ValueError):
    """A setting the benchmark would hand MediaMTX is out of its range."""


def binary() -> Path:
    """Where scripts/install-mediamtx.sh puts the binary (it may not be there yet)."""
    cache = os.environ.get("CAMSTREAM_CACHE") or str(Path.home() / ".cache" / "camstream")
    return Path(cache) / "bin" / "mediamtx"


def render_config(
    *,
    rtmp_port: int,
    hls_port: int,
    hls_dir: Path,
    segment_seconds: int = SEGMENT_SECONDS,
    segment_count: int = SEGMENT_COUNT,
) -> str:
    """The mediamtx.yml text for one benchmark run.

    MediaMTX refuses fewer than 3 segments in the playlist; ports must be real
    TCP ports and distinct (both servers bind 127.0.0.1).
    """
    for name, port in (("rtmp_port", rtmp_port), ("hls_port", hls_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{name} must be a TCP port (1-65535), got {port}")
    if rtmp_port == hls_port:
        raise ConfigError(f"rtmp_port and hls_port must differ, both are {rtmp_port}")
    if segment_seconds < 1:
        raise ConfigError(f"segment_seconds must be at least 1, got {segment_seconds}")
    if segment_count < 3:
        raise ConfigError(
            f"segment_count must be at least 3 (MediaMTX's minimum), got {segment_count}"
        )
    directory = str(hls_dir)
    if not hls_dir.is_absolute() or '"' in directory or "\n" in directory:
        raise ConfigError(f"hls_dir must be an absolute path without quotes, got {directory!r}")
    return f"""\
# Written by bench/mediamtx.py for one worker benchmark run (issue 12).
logLevel: warn
logDestinations: [stdout]
readTimeout: 10s
writeTimeout: 10s

api: false
metrics: false
pprof: false
playback: false
rtsp: false
webrtc: false
srt: false
moq: false

rtmp: true
rtmpEncryption: "no"
rtmpAddress: 127.0.0.1:{rtmp_port}

hls: true
hlsAddress: 127.0.0.1:{hls_port}
hlsEncryption: false
hlsAlwaysRemux: true
hlsVariant: mpegts
hlsSegmentCount: {segment_count}
hlsSegmentDuration: {segment_seconds}s
hlsDirectory: "{directory}"

pathDefaults:
  source: publisher

paths:
  all_others:
"""


def playlist_url(*, hls_port: int, path: str) -> str:
    """The HLS playlist MediaMTX serves for a published path (e.g. `live/s3`)."""
    return f"http://127.0.0.1:{hls_port}/{path.strip('/')}/index.m3u8"


def rtmp_url(*, rtmp_port: int, path: str) -> str:
    """Where a sender publishes to reach MediaMTX's path `path`."""
    return f"rtmp://127.0.0.1:{rtmp_port}/{path.strip('/')}"


__all__ = [
    "SEGMENT_COUNT",
    "SEGMENT_SECONDS",
    "VERSION",
    "ConfigError",
    "binary",
    "playlist_url",
    "render_config",
    "rtmp_url",
]
