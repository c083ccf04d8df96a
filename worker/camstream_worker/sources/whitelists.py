"""What FFmpeg may open for each kind of pulled source: protocols and demuxers, by name.

Who calls this: rtsp.py, http.py and file.py add `options_for(kind)` to the
options of every `av.open`. FFmpeg opens more than the URL it is given: a
playlist names segments, a demuxer may open files it names (concat, hls), a
URL prefix may pick a protocol (`subfile,,start,0,end,0,,:/etc/passwd` reads
a local file, `data:` inlines one). Both whitelists are inherited by every
nested open FFmpeg makes for that input (its HLS segments, its RTP streams).

Checked against the PyAV 18 wheel's FFmpeg 8 (tests/unit/test_source_whitelists.py
and tests/security/test_sources_*.py):

- RTSP needs `tcp` (RTSP over TCP, and interleaved RTP), `udp` and `rtp` (RTP
  over UDP), `tls` (rtsps://). The demuxer is `rtsp`.
- HTTP needs `http`, `tcp`, and for https:// `https` and `tls`; `httpproxy`
  for the CONNECT tunnel to our egress proxy; `crypto` for AES-128 HLS.
  Demuxers: the containers a camera or recorder serves over HTTP (MPEG-TS,
  MP4/fMP4, Matroska, FLV, raw H.264/H.265, ADTS AAC) and `hls`.
- A local file is read through `fd` (file.py opens it itself, so the path
  checked is the file read); no playlist demuxers (hls, concat), which
  would open further paths.

Never, for a network source: file, subfile, concat, concatf, data, pipe, fd,
unix, cache, async (local reads under another name), nor ftp, gopher, rtmp,
ipfs and the rest FFmpeg carries; a local file is read through fd only.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["rtsp", "http", "file"]

_RECORDING_FORMATS = "mpegts,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,flv,h264,hevc"

PROTOCOLS: dict[Kind, str] = {
    "rtsp": "tcp,udp,rtp,tls",
    "http": "http,https,tcp,tls,httpproxy,crypto",
    "file": "fd",
}
FORMATS: dict[Kind, str] = {
    "rtsp": "rtsp",
    "http": f"{_RECORDING_FORMATS},aac,hls",
    "file": _RECORDING_FORMATS,
}
# Never for a network source (they read local data); tests hold the lists to this.
LOCAL_PROTOCOLS = frozenset(
    {"file", "subfile", "concat", "concatf", "data", "pipe", "unix", "cache", "async", "fd"}
)


def options_for(kind: Kind) -> dict[str, str]:
    """The av.open options that confine an input of this kind."""
    return {"protocol_whitelist": PROTOCOLS[kind], "format_whitelist": FORMATS[kind]}
