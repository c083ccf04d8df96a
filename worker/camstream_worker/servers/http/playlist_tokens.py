"""Served playlists carry the viewer's token on to every URI they list.

Who calls this: server.py, when a playlist of a stream with viewer auth was
asked for with ?token= in its URL. Pure: playlist text in, playlist text out.

Why rewrite rather than put the token in the path: players (hls.js, Safari,
ExoPlayer, ffmpeg) resolve a playlist's relative URIs against the playlist's
URL *without its query*, so a token in the query would be dropped on the way
to the segments. A path-embedded token (/streams/t/<token>/ns/name/...)
survives that resolution with no rewriting, but it changes the URL scheme
every worker, Ingress rule, status.playbackPath and the player page share,
and a playlist is a few hundred bytes that the worker reads anyway. So the
URL scheme stays as it is, and the playlist answered to a tokened request
is the file with `?token=...` added to each URI.

A URI gets the token only if it stays below the playlist's folder: relative,
no scheme, no authority, no leading '/', no '..' segment. Anything else
(there is nothing else in the playlists camstream writes) is left as it is,
so a token is never handed to another place.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# URI="..." attributes of tags (EXT-X-MAP, EXT-X-MEDIA, EXT-X-I-FRAME-STREAM-INF,
# EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, EXT-X-KEY).
_URI_ATTRIBUTE = re.compile(r'(URI=")([^"]*)(")')
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def stays_below(uri: str) -> bool:
    """True for a relative reference that resolves inside the playlist's folder."""
    if not uri or uri.startswith(("/", "\\")) or _SCHEME.match(uri):
        return False
    path = uri.split("#", 1)[0].split("?", 1)[0]
    return ".." not in path.replace("\\", "/").split("/")


def with_query(uri: str, name: str, value: str) -> str:
    """`uri` with name=value added to its query (before any fragment)."""
    base, hash_mark, fragment = uri.partition("#")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{name}={quote(value, safe='-._~')}{hash_mark}{fragment}"


def carry(text: str, name: str, value: str) -> str:
    """The playlist `text` with name=value on every URI that stays below it."""

    def one(uri: str) -> str:
        return with_query(uri, name, value) if stays_below(uri) else uri

    out: list[str] = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        stripped = body.strip()
        if not stripped:
            out.append(line)
        elif stripped.startswith("#"):
            if 'URI="' in body:
                body = _URI_ATTRIBUTE.sub(lambda m: m.group(1) + one(m.group(2)) + m.group(3), body)
            out.append(body + ending)
        else:
            out.append(one(stripped) + ending)
    return "".join(out)
