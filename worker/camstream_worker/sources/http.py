"""HTTP pull: a recording or a live feed served over HTTP(S), paced at real time.

Who calls this: kinds.py makes one `HttpSource` per `protocol: http` stream;
the supervisor runs it once per session. Every connection FFmpeg makes for
it (the URL, redirects, HLS playlists and segments) goes through this
process's egress proxy (egress.py, egress_proxy.py), which checks each
destination against the deny-list; FFmpeg may open nothing but HTTP(S) and
the containers a camera serves (whitelists.py). Credentials go into the URL
handed to FFmpeg only (spec.py has made sure they travel inside TLS unless
the stream allows otherwise); FFmpeg sends them as an Authorization header.

Pacing: reading a recording as fast as the network allows would flood the
HLS window in a second; pacing to the packets' timestamps makes it behave
like a live camera. At the end the source raises SourceEnded and the
supervisor starts it over, which the playlist marks as a discontinuity.
"""

from __future__ import annotations

import functools
import threading

import av

from camstream.spec import StreamSpec
from camstream_worker.sources import whitelists
from camstream_worker.sources.base import (
    Context,
    PacketSink,
    run_in_own_thread,
    url_with_credentials,
)
from camstream_worker.sources.demux import remux_input


class HttpSource:
    pushed = False

    def __init__(self, spec: StreamSpec, context: Context) -> None:
        source = spec.source
        assert source.url is not None  # spec.py requires one for http
        self._url = source.url
        self._credentials = source.credentials
        self._namespace = spec.key.namespace
        self._context = context
        self._options = {
            "rw_timeout": str(int(source.stall_timeout_seconds * 1_000_000)),
            **whitelists.options_for("http"),
        }

    async def run(self, sink: PacketSink, stopping: threading.Event) -> None:
        url = await url_with_credentials(
            self._url, self._credentials, self._context.secrets, self._namespace
        )
        options = {**self._options, "http_proxy": await self._context.egress.http_proxy()}

        def open_input() -> av.container.InputContainer:
            return av.open(url, options=options)

        prefix = self._context.log_prefix
        await run_in_own_thread(
            functools.partial(
                remux_input,
                open_input,
                sink,
                stopping,
                realtime=True,
                credentials=self._credentials is not None,
                log_prefix=prefix,
            ),
            name=f"http {prefix.strip()}",
        )
