"""An SRT stream ID to the stream it publishes: pure, total, every refusal with a reason.

Who calls this: the SRT listener's handshake callback (servers/srt/listener.py),
once per connection attempt, before any media flows. Two forms are accepted:

- SRT's access-control syntax (the `#!::` prefix, see SRT's
  docs/features/access-control.md): comma-separated `key=value` pairs in any
  order; `r` (resource) is `<namespace>/<name>`, `m` (mode) must be
  `publish` when given (`request`, a player, is refused: this is an ingest
  port); any other key (`u`, `s`, `t`, `h`...) is ignored;
- plain `<namespace>/<name>`.

Names follow the CameraStream's: DNS labels. A stream ID never carries the
passphrase (SRT sends that out of band, in the key material exchange), so
refusal messages may quote the ID's shape but never its bytes in full: a
stranger's bytes are cut and made printable (`shown`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from camstream.spec import StreamKey

PREFIX = "#!::"
MAX_LENGTH = 512  # libsrt's own cap on SRTO_STREAMID
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Refused:
    """A stream ID that names no stream; `reason` is safe to log and to show."""

    reason: str


def parse(stream_id: str) -> StreamKey | Refused:
    """The stream a publisher's stream ID names, or why it names none."""
    if not stream_id:
        return Refused("no stream ID: publish with streamid=<namespace>/<name>")
    if len(stream_id) > MAX_LENGTH:
        return Refused(f"stream ID longer than {MAX_LENGTH} bytes")
    if not stream_id.startswith(PREFIX):
        return _resource(stream_id)
    pairs: dict[str, str] = {}
    for item in stream_id[len(PREFIX) :].split(","):
        key, equals, value = item.partition("=")
        if not equals or not key:
            return Refused(f"stream ID item {shown(item)} is not key=value")
        if key in pairs:
            return Refused(f"stream ID names {shown(key)} twice")
        pairs[key] = value
    mode = pairs.get("m", "publish")
    if mode != "publish":
        return Refused(f"stream ID mode m={shown(mode)}: this port only takes m=publish")
    if "r" not in pairs:
        return Refused("stream ID has no r=<namespace>/<name>")
    return _resource(pairs["r"])


def _resource(resource: str) -> StreamKey | Refused:
    namespace, slash, name = resource.partition("/")
    if not slash or not _LABEL.match(namespace) or not _LABEL.match(name):
        return Refused(f"stream ID resource {shown(resource)} is not <namespace>/<name>")
    return StreamKey(namespace, name)


def format_id(key: StreamKey) -> str:
    """The access-control form for `key`, as cameras should be told to send it."""
    return f"{PREFIX}r={key.namespace}/{key.name},m=publish"


def shown(text: str, limit: int = 40) -> str:
    """A stranger's bytes as a log may show them: printable, cut, quoted."""
    cut = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return repr(cut + ("…" if len(text) > limit else ""))
