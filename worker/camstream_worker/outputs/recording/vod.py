"""VOD playlists of recorded time: pure rendering (RFC 8216).

Who calls this: the recordings routes, with the merged timeline of a time
range. Every segment is a byte range (EXT-X-BYTERANGE, version 4) of its
group object, served through the worker (`objects/<hour>/<object>`,
relative to the playlist); each carries its EXT-X-PROGRAM-DATE-TIME, so a
player's clock shows when it was recorded, and a gap or a change of owner is
an EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from camstream.recording.timeline import Chosen

OBJECTS = "objects"


def object_uri(object_key: str) -> str:
    """objects/<hour>/<object>, from <ns>/<name>/<hour>/<object>."""
    hour, name = object_key.split("/")[-2:]
    return f"{OBJECTS}/{hour}/{name}"


def render(chosen: Sequence[Chosen]) -> str:
    longest = max((c.piece.entry.duration_ms for c in chosen), default=1000)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:4",
        f"#EXT-X-TARGETDURATION:{max(1, math.floor(longest / 1000 + 0.5))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for item in chosen:
        entry = item.piece.entry
        if item.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso(entry.start_ms)}")
        lines.append(f"#EXTINF:{entry.duration_ms / 1000:.3f},")
        lines.append(f"#EXT-X-BYTERANGE:{entry.size}@{entry.offset}")
        lines.append(object_uri(item.piece.object_key))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
