"""Reading a live HLS playlist the way the worker benchmark counts live streams.

Who calls this: `bench/worker_bench.py` fetches every stream's playlist from
each receiver (over HTTP from camstream and MediaMTX, from the file FFmpeg
writes) before and after the measured window; a stream is live when its
newest segment moved on in between. MediaMTX answers the first fetch with a
multivariant playlist that names the media playlist, so `variant_uri` says
where to go next.

Pure functions over the playlist text; no I/O here.
"""

from __future__ import annotations

from urllib.parse import urljoin


class PlaylistError(ValueError):
    """The text is not an HLS playlist the benchmark can count segments in."""


def newest_segment(text: str) -> int:
    """The number of the newest segment a media playlist lists (0 when it lists none).

    That is `#EXT-X-MEDIA-SEQUENCE` (the first listed segment's number, 0 when
    absent, as RFC 8216 says) plus the count of segment URIs, so it grows by
    one with every segment the receiver adds, whatever its window size.
    """
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError(f"not an HLS playlist (starts {text[:20]!r})")
    sequence = 0
    segments = 0
    for line in lines:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            value = line.partition(":")[2]
            if not value.isdigit():
                raise PlaylistError(f"EXT-X-MEDIA-SEQUENCE is not a number: {value[:20]!r}")
            sequence = int(value)
        elif line and not line.startswith("#"):
            segments += 1
    return sequence + segments


def variant_uri(text: str, base: str) -> str | None:
    """The first media playlist a multivariant playlist names, resolved against `base`.

    None for a media playlist (one without `#EXT-X-STREAM-INF`).
    """
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF"):
            following = (n for n in lines[index + 1 :] if n and not n.startswith("#"))
            uri = next(following, None)
            if uri is None:
                raise PlaylistError("EXT-X-STREAM-INF without a URI after it")
            return urljoin(base, uri)
    return None


__all__ = ["PlaylistError", "newest_segment", "variant_uri"]
