"""The one place a source protocol's name meets its module.

Who calls this: the engine, once per stream it starts: `make_source` builds
the stream's source from its spec, and nothing else in the worker asks which
protocol a stream speaks (a source's `pushed` trait says all the rest needs).
"""

from __future__ import annotations

from collections.abc import Callable

from camstream.spec import StreamSpec
from camstream_worker.sources import file, http, rtmp, rtsp, srt, synthetic
from camstream_worker.sources.base import Context, Source

_BY_PROTOCOL: dict[str, Callable[[StreamSpec, Context], Source]] = {
    "rtsp": rtsp.RtspSource,
    "rtmp": rtmp.RtmpPushSource,
    "srt": srt.make_source,
    "file": file.FileSource,
    "http": http.HttpSource,
    "synthetic": synthetic.SyntheticSource,
}


def make_source(spec: StreamSpec, context: Context) -> Source:
    """The source of a stream (spec.py has already refused unknown protocols)."""
    return _BY_PROTOCOL[spec.source.protocol](spec, context)
