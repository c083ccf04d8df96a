"""One stream's recorded timeline, merged from the objects of every writer: pure.

Who calls this: the worker's recordings routes (VOD playlists, clips, the
list of recorded ranges). During a make-before-break handoff both owners
record the stream for a while, each into its own objects; after a crash the
new owner starts at some moment. The merge below turns all of that into one
timeline by program date-time:

- pieces are taken in order of start (ties: by object key, then offset, so
  the result does not depend on the order objects were listed in);
- a piece more than half of which lies in time already covered is a
  duplicate (the other owner recorded the same moment) and is left out;
- a piece that does not directly follow the previous one of the same
  writer (the next media sequence number), or starts more than GAP_MS after
  it ended, or was marked as a new source session, starts a discontinuity:
  a player must reset its decoder there (timestamps and codec parameters may
  change between owners).

`ranges` joins what is recorded into (start, end) ranges, so gaps are what
lies between them; `ranges_of_groups` does the same from the listing alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from camstream.recording.groupfile import Entry

# Segments are cut on keyframes and stamped with the wall clock of their first
# frame, so consecutive ones do not meet to the millisecond: up to a second of
# slack is still "continuous".
GAP_MS = 1000


@dataclass(frozen=True, slots=True)
class Piece:
    """One segment of one object, as the merge sees it."""

    object_key: str
    entry: Entry
    writer: str = ""  # one recorder: its groups follow each other without a break

    @property
    def start_ms(self) -> int:
        return self.entry.start_ms

    @property
    def end_ms(self) -> int:
        return self.entry.end_ms


@dataclass(frozen=True, slots=True)
class Chosen:
    piece: Piece
    discontinuity: bool  # a player resets before this piece


def merge(pieces: Iterable[Piece]) -> list[Chosen]:
    ordered = sorted(pieces, key=lambda p: (p.start_ms, p.object_key, p.entry.offset))
    chosen: list[Chosen] = []
    covered_until: int | None = None
    previous: Piece | None = None
    for piece in ordered:
        duration = piece.entry.duration_ms
        if covered_until is not None and covered_until - piece.start_ms > duration / 2:
            continue  # mostly recorded already, by this writer or another
        follows = (
            previous is not None
            and previous.writer == piece.writer
            and previous.entry.sequence + 1 == piece.entry.sequence
            and piece.start_ms - previous.end_ms <= GAP_MS
        )
        discontinuity = bool(chosen) and (piece.entry.discontinuity or not follows)
        chosen.append(Chosen(piece, discontinuity))
        covered_until = max(covered_until or piece.end_ms, piece.end_ms)
        previous = piece
    return chosen


def within(chosen: Sequence[Chosen], start_ms: int, end_ms: int) -> list[Chosen]:
    """The chosen pieces that overlap [start_ms, end_ms); the first one never marked."""
    inside = [c for c in chosen if c.piece.end_ms > start_ms and c.piece.start_ms < end_ms]
    if inside and inside[0].discontinuity:
        inside[0] = Chosen(inside[0].piece, False)
    return inside


def ranges(spans: Iterable[tuple[int, int]], gap_ms: int = GAP_MS) -> list[tuple[int, int]]:
    """(start, end) spans joined where they touch or leave at most gap_ms between them."""
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start - out[-1][1] <= gap_ms:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def ranges_of_chosen(chosen: Sequence[Chosen], gap_ms: int = GAP_MS) -> list[tuple[int, int]]:
    return ranges(((c.piece.start_ms, c.piece.end_ms) for c in chosen), gap_ms)


def clip_ranges(
    spans: Sequence[tuple[int, int]], start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """Ranges cut to the window asked for."""
    return [(max(a, start_ms), min(b, end_ms)) for a, b in spans if b > start_ms and a < end_ms]
