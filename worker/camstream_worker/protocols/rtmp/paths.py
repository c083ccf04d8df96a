"""Which stream an RTMP publish is for, and the stream key it offers.

    rtmp://<worker>:1935/<namespace>/<name>/<stream key>
    rtmp://<worker>:1935/<namespace>/<name>?key=<stream key>

RTMP splits that path into the ``connect`` command's app and the
``publish`` command's stream name, wherever a client chooses to cut it
(FFmpeg takes the first two elements as the app). Who calls this: the engine,
to route and check a publish, and the RTMP front, which sees only the app
when it must pick the process or worker that owns the stream. Pure.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from camstream.spec import StreamKey


def publish_target(app: str, stream_name: str) -> tuple[StreamKey, str] | None:
    """The stream a publish names and the key it offers, or None if it names none."""
    path, _, query = f"{app}/{stream_name}".partition("?")
    parts = [p for p in path.split("/") if p]
    offered = parse_qs(query).get("key", [None])[0]
    if len(parts) == 3 and offered is None:
        offered = parts.pop()
    if len(parts) != 2 or offered is None:
        return None
    return StreamKey(parts[0], parts[1]), offered


def stream_of_app(app: str) -> StreamKey | None:
    """The stream a ``connect``'s app names (``<namespace>/<name>``), if it does."""
    parts = [p for p in app.partition("?")[0].split("/") if p]
    return StreamKey(parts[0], parts[1]) if len(parts) >= 2 else None
