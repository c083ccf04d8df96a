"""The fence's answer on the wire, its times restated on the cluster's clock. Pure: no I/O.

Who calls this: cluster/fencing.py; the old owner encodes what its writers
said (`encode`), the new owner decodes it (`decode`).

A writer says where its last segment ended on its own machine's wall clock
(outputs/hls/writer.py), and the new owner compares that with its own
segments' ends, on another machine whose wall clock may be seconds off
(#14). So the end crosses on the cluster's clock (clock.py), which each
worker knows to within an interval [low, high] of offsets from its wall
clock: the old owner adds `low`, the new owner subtracts its `high`. Both
err early, and the restated end is never later than the true one (a
property test holds it to that), by at most the two intervals' widths
(about two round trips to the API server; up to ~1 s seen on a worker
that had just started). Why early: too early, the new owner keeps a
segment the old one had covered, and a viewer sees up to that error of
picture again, which hls.js plays through; too late, it drops one the old
owner had not covered, leaving a hole in the player's buffer, which hls.js
stalls on and then skips (the fence exists to stop exactly that).

The body: `{"writers": {"<folder>": {"last": n, "end": t, "tail": [...]} |
null}}`, at most MAX_WRITERS writers (a stream's own writer and its ABR
ladder's) and MAX_ANSWER_BYTES in all. Each writer's tail (sequence.py's
TailSegment: its newest segments, for the new owner to list in front of its
own) is at most TAIL_SEGMENTS entries `{"n": number, "d": duration, "c":
discontinuity number, "p": program date time or null, "i": independent, "b":
base64 of the MPEG-TS bytes}`, with TAIL_BYTES of segment bytes in all. A
program date time is the old owner's, as its players saw it: not restated.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from camstream_worker.outputs.hls.sequence import (
    TAIL_BYTES,
    TAIL_SEGMENTS,
    Fenced,
    Said,
    TailSegment,
)

__all__ = ["MAX_ANSWER_BYTES", "MAX_WRITERS", "decode", "encode", "from_cluster", "to_cluster"]

MAX_WRITERS = 16  # the source copy and up to 15 renditions
MAX_NAME = 63  # a rendition's name is a DNS label
# 16 writers of ~100 bytes each and their tails' entries of ~150, with room
# to spare, and the tails' bytes in base64 (4 characters for every 3 bytes).
MAX_ANSWER_BYTES = 16 * 1024 + 4 * (TAIL_BYTES + 2) // 3


def to_cluster(wall: float, offset: tuple[float, float]) -> float:
    """A time on this machine's wall clock, on the cluster's clock, at its earliest."""
    return wall + offset[0]


def from_cluster(cluster: float, offset: tuple[float, float]) -> float:
    """A time on the cluster's clock, on this machine's wall clock, at its earliest."""
    return cluster - offset[1]


def encode(fenced: Mapping[str, Said | None], offset: tuple[float, float]) -> bytes:
    """The old owner's answer; `offset`: its (low, high) of cluster minus wall time."""
    writers = {
        name: None
        if said is None
        else {
            "last": said.last,
            "end": to_cluster(said.end, offset),
            "tail": [_tail_entry(t) for t in said.tail],
        }
        for name, said in fenced.items()
    }
    return json.dumps({"writers": writers}, separators=(",", ":")).encode()


def _tail_entry(segment: TailSegment) -> dict[str, Any]:
    return {
        "n": segment.sequence,
        "d": segment.duration,
        "c": segment.discontinuity_number,
        "p": segment.program_date_time,
        "i": segment.independent,
        "b": base64.b64encode(segment.data).decode("ascii"),
    }


def decode(body: bytes, offset: tuple[float, float]) -> Fenced:
    """The old owner's answer with its ends on this machine's wall clock (at their earliest).

    Raises ValueError for anything else than an answer within the bounds.
    """
    if len(body) > MAX_ANSWER_BYTES:
        raise ValueError("fence answer too large")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("fence answer is not JSON") from exc
    writers = document.get("writers") if isinstance(document, dict) else None
    if not isinstance(writers, dict) or len(writers) > MAX_WRITERS:
        raise ValueError("fence answer has no writers, or too many")
    fenced: Fenced = {}
    budget = [TAIL_BYTES]  # what is left of the tails' bytes over all writers
    for name, said in writers.items():
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise ValueError("fence answer names a writer badly")
        if said is None:
            fenced[name] = None
            continue
        last = said.get("last") if isinstance(said, dict) else None
        end = said.get("end") if isinstance(said, dict) else None
        if not isinstance(last, int) or isinstance(last, bool) or last < 0:
            raise ValueError("fence answer has a bad sequence number")
        if not isinstance(end, int | float) or isinstance(end, bool) or not math.isfinite(end):
            raise ValueError("fence answer has a bad end time")
        tail = said.get("tail", [])
        if not isinstance(tail, list) or len(tail) > TAIL_SEGMENTS:
            raise ValueError("fence answer has a bad tail")
        fenced[name] = Said(
            last, from_cluster(float(end), offset), tuple(_tail_segment(t, budget) for t in tail)
        )
    return fenced


def _tail_segment(entry: object, budget: list[int]) -> TailSegment:
    if not isinstance(entry, dict):
        raise ValueError("fence answer has a bad tail entry")
    number, duration, cc = entry.get("n"), entry.get("d"), entry.get("c")
    pdt, independent, data = entry.get("p"), entry.get("i"), entry.get("b")
    if not all(_count(v) for v in (number, cc)):
        raise ValueError("fence answer's tail has a bad number")
    if not _seconds(duration) or not (pdt is None or _seconds(pdt)):
        raise ValueError("fence answer's tail has a bad time")
    if not isinstance(independent, bool) or not isinstance(data, str):
        raise ValueError("fence answer has a bad tail entry")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("fence answer's tail is not base64") from exc
    budget[0] -= len(raw)
    if budget[0] < 0:
        raise ValueError("fence answer's tail is too large")
    return TailSegment(int(number), float(duration), int(cc), pdt, independent, raw)  # type: ignore[arg-type]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
