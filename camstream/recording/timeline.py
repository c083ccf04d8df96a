"""One stream's recorded timeline, merged from the objects of every writer: pure.

Who calls this: the worker's recordings routes (VOD playlists, clips, the
list of recorded ranges). During a make-before-break handoff both owners
record the stream for a while, each into its own objects; after a crash the
new owner starts at some moment. The merge below turns all of that into one
timeline by program date-time:

- the timeline follows one writer for as long as it goes on (its next
  segment, without a gap), so a handoff switches writers once, where the old
  owner stopped; when it stops, the earliest piece that adds time comes next
  (ties: by writer, object key, offset, so the result does not depend on the
  order objects were listed in);
- a piece that adds no more than min(GAP_MS, half its duration) of time not
  covered yet is a duplicate (the other owner recorded the same moment) and
  is left out; a piece that adds more is kept whole, since a player cannot
  play part of a segment. So at a change of writer the timeline loses at
  most that much and replays at most the rest of one segment; within one
  writer neither;
- a piece that does not directly follow the previous one of the same
  writer (the next media sequence number), or starts more than GAP_MS after
  it ended, or was marked as a new source session, starts a discontinuity:
  a player must reset its decoder there (timestamps and codec parameters may
  change between owners).

`ranges` joins what is recorded into (start, end) ranges, so gaps are what
lies between them; `ranges_of_groups` does the same from the listing alone.
"""

from __future__ import annotations

import itertools
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
    ordered = sorted(pieces, key=lambda p: (p.start_ms, p.writer, p.object_key, p.entry.offset))
    successor: dict[Piece, Piece] = {}
    by_writer: dict[str, list[Piece]] = {}
    for piece in ordered:
        by_writer.setdefault(piece.writer, []).append(piece)
    for own in by_writer.values():
        own.sort(key=lambda p: (p.entry.sequence, p.start_ms))
        successor.update(itertools.pairwise(own))
    chosen: list[Chosen] = []
    covered_until: int | None = None
    previous: Piece | None = None
    at = 0  # ordered[:at] add nothing any more (covered time only grows)

    def adds(piece: Piece) -> bool:
        return covered_until is None or piece.end_ms - covered_until > _slack(piece)

    while True:
        candidate = successor.get(previous) if previous is not None else None
        if candidate is None or not _follows(previous, candidate) or not adds(candidate):
            while at < len(ordered) and not adds(ordered[at]):
                at += 1  # recorded already, by this writer or another
            if at == len(ordered):
                return chosen
            candidate = ordered[at]
        discontinuity = bool(chosen) and (
            candidate.entry.discontinuity or not _follows(previous, candidate)
        )
        chosen.append(Chosen(candidate, discontinuity))
        covered_until = max(covered_until or candidate.end_ms, candidate.end_ms)
        previous = candidate


def _follows(previous: Piece | None, piece: Piece) -> bool:
    """`piece` is the next segment of the same writer, without a gap."""
    return (
        previous is not None
        and previous.writer == piece.writer
        and previous.entry.sequence + 1 == piece.entry.sequence
        and piece.start_ms - previous.end_ms <= GAP_MS
    )


def _slack(piece: Piece) -> float:
    """New time a piece must add to be kept."""
    return min(GAP_MS, piece.entry.duration_ms / 2)


def replay_bound(piece: Piece) -> float:
    """The most time a kept piece can repeat of what came before it."""
    return piece.entry.duration_ms - _slack(piece)


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
