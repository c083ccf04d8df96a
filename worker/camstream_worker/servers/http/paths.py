"""Which URL paths the worker's HTTP server may turn into files, and how to serve them.

Who calls this: server.py, for every request under /streams/ and /static/,
before it touches the file system. It is pure (no I/O) so the rules that keep
requests inside the HLS root can be tested exhaustively on their own
(tests/unit/test_http_paths.py); the one check that needs the disk, that a
symlink does not lead out of the stream's folder, stays in server.py.

The rules, strictest first:
- namespace and name are Kubernetes names (lowercase DNS labels, dots allowed
  in the name), so they can never be "..", empty, or carry a separator;
- a file path is one or two components (a file, or <rendition>/<file>), each
  made only of [A-Za-z0-9._-] and never starting with a dot: that rules out
  "." and ".." and the hidden temporary files of atomic playlist writes;
- only the file kinds HLS output consists of are served, each with its fixed
  media type and cache policy.
Anything else is refused before a path is ever built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from camstream.spec import StreamKey

# A DNS label (namespaces) and a DNS subdomain (object names), as Kubernetes
# validates them; a stream key that passes cannot name anything but one folder.
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# One file-path component: no leading dot, so never "." or ".." or hidden.
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
MAX_DEPTH = 2  # <file> or <rendition>/<file>

# Segments never change once written (a new segment gets a new sequence number
# in its name), so caches and CDNs may keep them for as long as they like; a
# day is far beyond any playlist window.
SEGMENT_MAX_AGE = 86400
SEGMENT_CACHE = f"public, max-age={SEGMENT_MAX_AGE}, immutable"
# Playlists change every segment; the thumbnail and the fMP4 init segment are
# rewritten in place (a new thumbnail, new codec parameters after a reconnect).
NO_CACHE = "no-cache"
STATIC_CACHE = "public, max-age=300"


@dataclass(frozen=True, slots=True)
class FileKind:
    """How one kind of HLS output file is served."""

    content_type: str
    cache_control: str
    is_playlist: bool = False


HLS_FILE_KINDS: dict[str, FileKind] = {
    ".m3u8": FileKind("application/vnd.apple.mpegurl", NO_CACHE, is_playlist=True),
    ".ts": FileKind("video/mp2t", SEGMENT_CACHE),
    ".m4s": FileKind("video/mp4", SEGMENT_CACHE),
    ".mp4": FileKind("video/mp4", NO_CACHE),  # init.mp4: rewritten on reconnect
    ".aac": FileKind("audio/aac", SEGMENT_CACHE),
    ".vtt": FileKind("text/vtt; charset=utf-8", SEGMENT_CACHE),
    ".jpg": FileKind("image/jpeg", NO_CACHE),
    ".jpeg": FileKind("image/jpeg", NO_CACHE),
}

STATIC_FILE_KINDS: dict[str, FileKind] = {
    ".js": FileKind("text/javascript; charset=utf-8", STATIC_CACHE),
    ".css": FileKind("text/css; charset=utf-8", STATIC_CACHE),
    ".map": FileKind("application/json", STATIC_CACHE),
}


class PathRejected(ValueError):
    """A request path that can never name a servable file (answer 400)."""


@dataclass(frozen=True, slots=True)
class HlsFile:
    """A validated request for one file of one stream."""

    key: StreamKey
    relative: PurePosixPath  # below the stream's folder, 1..MAX_DEPTH components
    kind: FileKind


def parse_stream_key(namespace: str, name: str) -> StreamKey:
    """The stream a URL names, or PathRejected if it cannot be a Kubernetes name."""
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise PathRejected("invalid namespace")
    if not _NAME_RE.fullmatch(name):
        raise PathRejected("invalid stream name")
    return StreamKey(namespace, name)


def parse_relative(tail: str, max_depth: int = MAX_DEPTH) -> PurePosixPath:
    """A safe relative path from the already percent-decoded URL tail.

    Splitting on "/" ourselves (rather than trusting a path library's
    normalisation) means "a/../b", "/etc", "a//b" and "a\\b" are all refused.
    """
    parts = tail.split("/")
    if not 1 <= len(parts) <= max_depth:
        raise PathRejected("bad path depth")
    for part in parts:
        if not _COMPONENT_RE.fullmatch(part):
            raise PathRejected("invalid path component")
    return PurePosixPath(*parts)


def _kind(path: PurePosixPath, kinds: dict[str, FileKind]) -> FileKind:
    kind = kinds.get(path.suffix.lower())
    if kind is None:
        raise PathRejected("file type not served")
    return kind


def parse_hls_file(namespace: str, name: str, tail: str) -> HlsFile:
    """Validate /streams/{namespace}/{name}/{tail} into an HlsFile, or PathRejected."""
    key = parse_stream_key(namespace, name)
    relative = parse_relative(tail)
    return HlsFile(key=key, relative=relative, kind=_kind(relative, HLS_FILE_KINDS))


def parse_static_file(tail: str) -> tuple[PurePosixPath, FileKind]:
    """Validate /static/{tail}: one component, a script or a style sheet."""
    relative = parse_relative(tail, max_depth=1)
    return relative, _kind(relative, STATIC_FILE_KINDS)
