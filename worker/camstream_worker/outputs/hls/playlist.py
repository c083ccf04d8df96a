"""HLS media and master playlists, rendered from plain values (RFC 8216).

Who calls this: writer.py after every finished segment, and the transcoder for its
master playlist. Pure: no I/O, so the window/discontinuity rules are tested
without media.

Rules kept here:
- EXT-X-MEDIA-SEQUENCE is the sequence number of the first listed segment; it
  only grows, across reconnects and handoffs (the caller chooses the start).
- EXT-X-DISCONTINUITY-SEQUENCE counts the discontinuities that slid out of
  the window, so a player can match segments across reloads. Its base is
  the caller's: writer.py starts each writer's count at its first media
  sequence number, so a new owner never reuses an old owner's numbers.
- EXT-X-TARGETDURATION is at least every listed EXTINF rounded to the nearest
  integer (RFC 8216 4.3.3.1); the caller keeps it from shrinking.
- EXT-X-INDEPENDENT-SEGMENTS only while every listed segment starts with a
  keyframe (the writer cuts without one at its segment caps).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    sequence: int
    uri: str
    duration: float
    discontinuity: bool = False
    program_date_time: float | None = None  # wall-clock seconds of the first frame
    init_uri: str | None = None  # fMP4: the EXT-X-MAP init segment it needs
    independent: bool = True  # starts with a keyframe (decodable without the one before)


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int
    width: int | None = None
    height: int | None = None
    codecs: str | None = None


def target_duration(segments: Sequence[Segment], floor: int) -> int:
    """Smallest valid EXT-X-TARGETDURATION for the segments, never below floor."""
    longest = max((s.duration for s in segments), default=0.0)
    return max(floor, math.floor(longest + 0.5), 1)


def render_media_playlist(
    segments: Sequence[Segment],
    *,
    target: int,
    discontinuity_sequence: int,
    ended: bool = False,
) -> str:
    """The text of a live media playlist listing `segments` (oldest first)."""
    version = 7 if any(s.init_uri for s in segments) else 3
    first_sequence = segments[0].sequence if segments else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}",
    ]
    if all(s.independent for s in segments):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    current_init = None
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_uri and segment.init_uri != current_init:
            lines.append(f'#EXT-X-MAP:URI="{segment.init_uri}"')
            current_init = segment.init_uri
        if segment.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(segment.program_date_time)}")
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(segment.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def render_master_playlist(variants: Sequence[Variant]) -> str:
    """A master playlist offering each variant (highest bandwidth first)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in sorted(variants, key=lambda v: -v.bandwidth):
        attributes = [f"BANDWIDTH={variant.bandwidth}"]
        if variant.width and variant.height:
            attributes.append(f"RESOLUTION={variant.width}x{variant.height}")
        if variant.codecs:
            attributes.append(f'CODECS="{variant.codecs}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


def slide_window(
    segments: Sequence[Segment], window: int, discontinuity_sequence: int
) -> tuple[tuple[Segment, ...], tuple[Segment, ...], int]:
    """Split into (kept, dropped) keeping the newest `window` segments.

    Returns the discontinuity sequence advanced by the discontinuities that
    left the window.
    """
    if len(segments) <= window:
        return tuple(segments), (), discontinuity_sequence
    dropped = tuple(segments[: len(segments) - window])
    kept = tuple(segments[len(segments) - window :])
    return kept, dropped, discontinuity_sequence + sum(s.discontinuity for s in dropped)


def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
