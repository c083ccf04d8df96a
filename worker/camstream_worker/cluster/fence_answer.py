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

The body: `{"writers": {"<folder>": {"last": n, "end": t} | null}}`, at most
MAX_WRITERS writers (a stream's own writer and its ABR ladder's) and
MAX_ANSWER_BYTES in all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from camstream_worker.outputs.hls.sequence import Fenced

__all__ = ["MAX_ANSWER_BYTES", "MAX_WRITERS", "decode", "encode", "from_cluster", "to_cluster"]

MAX_WRITERS = 16  # the source copy and up to 15 renditions
MAX_ANSWER_BYTES = 4096  # 16 writers of ~100 bytes each, with room to spare
MAX_NAME = 63  # a rendition's name is a DNS label


def to_cluster(wall: float, offset: tuple[float, float]) -> float:
    """A time on this machine's wall clock, on the cluster's clock, at its earliest."""
    return wall + offset[0]


def from_cluster(cluster: float, offset: tuple[float, float]) -> float:
    """A time on the cluster's clock, on this machine's wall clock, at its earliest."""
    return cluster - offset[1]


def encode(fenced: Mapping[str, tuple[int, float] | None], offset: tuple[float, float]) -> bytes:
    """The old owner's answer; `offset`: its (low, high) of cluster minus wall time."""
    writers = {
        name: None if said is None else {"last": said[0], "end": to_cluster(said[1], offset)}
        for name, said in fenced.items()
    }
    return json.dumps({"writers": writers}, separators=(",", ":")).encode()


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
        fenced[name] = (last, from_cluster(float(end), offset))
    return fenced
