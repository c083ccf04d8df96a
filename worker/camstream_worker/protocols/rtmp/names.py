"""Stream names as logs may show them: stream keys never reach a log line.

A publisher proves itself with a stream key carried in the stream name
(``live/KEY``) or in a query parameter (``name?key=KEY``), so the raw name is a
secret. The RTMP connection (``servers/rtmp/connection.py``) names its stream in every log
line through ``redact_app`` and ``redact_name``, cleans other untrusted text
(command names) with ``printable``, and uses ``stream_identity`` to tell when a
new publish replaces a live one. Pure: strings in, strings out.
"""

from __future__ import annotations

__all__ = ["printable", "redact_app", "redact_name", "stream_identity"]

# Query parameters that carry secrets; when one is present the name before the
# "?" is just a name and may be shown.
_SECRET_PARAMS = ("key", "token", "secret", "pass", "password", "auth", "sign", "signature")


def printable(text: str, limit: int = 64) -> str:
    """Untrusted text made safe for a log line: short, no control characters."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("…" if len(text) > limit else "")


def _redact_query(query: str) -> str:
    items = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        items.append(f"{printable(name, 16)}=***" if eq else "***")
    return "&".join(items)


def redact_name(stream_name: str) -> str:
    """The stream name as it may appear in logs: the key part replaced by ***.

    ``KEY`` → ``***``; ``cam1/KEY`` → ``cam1/***``; ``cam1?key=KEY`` →
    ``cam1?key=***``. Without a recognisable secret parameter the last path
    segment is taken to be the key.
    """
    base, sep, query = stream_name.partition("?")
    names = {item.partition("=")[0].lower() for item in query.split("&")} if sep else set()
    if not names.intersection(_SECRET_PARAMS):
        head, slash, _ = base.rpartition("/")
        base = f"{head}/***" if slash else "***"
    return printable(base) + (f"?{_redact_query(query)}" if sep else "")


def redact_app(app: str) -> str:
    """The app name for logs: what follows ``<namespace>/<name>`` is a key, and so hidden.

    Clients cut ``rtmp://host/<namespace>/<name>/<key>`` into app and stream
    name where they like; one may send the whole path as its app and an
    empty name: ``default/gate/KEY`` → ``default/gate/***``. Query parameter
    values are hidden too: ``default/gate?key=KEY`` → ``default/gate?key=***``.
    """
    base, sep, query = app.partition("?")
    seen = 0
    segments = []
    for segment in base.split("/"):
        if segment:
            seen += 1
            if seen > 2:
                segment = "***"
        segments.append(segment)
    return printable("/".join(segments)) + (f"?{_redact_query(query)}" if sep else "")


def stream_identity(app: str, stream_name: str) -> tuple[str, str]:
    """What makes two publishes "the same stream": app and name without query."""
    return app.partition("?")[0].strip("/"), stream_name.partition("?")[0]
