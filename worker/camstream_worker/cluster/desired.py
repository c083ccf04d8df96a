"""What this worker should run, confirm and report: pure, no I/O.

Who calls this: agent.py, after every change of the ring ConfigMap, of a
watched CameraStream or of a stream's state in the engine.

- `streams_to_run`: the enabled, valid streams of the partitions the ring
  gives this worker (those it serves plus those it is taking over).
- `confirmations`: the handoffs targeting this worker that it may confirm.
  A partition is confirmed when every one of its streams is settled here:
  Live, or Failed (a permanent error the source would hit as well), or a push
  (rtmp) stream that is waiting for its publisher (it cannot be live before the
  camera moves), or a stream the current owner does not have live either
  (nothing to lose). Confirming needs the stream watch to cover the partition,
  so a partition with streams not listed yet is never confirmed empty.
- `worker_status`: the status fields the serving worker owns.
- `start_sequence`: where a newly started stream's HLS media sequence begins
  (the rules and why are in camstream_worker/outputs/hls/sequence.py).
- `listed_cover` and `relabelled_for_larger_ring`: keep the stream watch's
  coverage right while the ring grows (handoff.grow) and the operator
  relabels every stream; growth moves no stream, so none may stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from camstream import ring
from camstream.conditions import condition
from camstream.handoff import RingDoc, handoffs_to, partitions_for
from camstream.spec import SpecError, StreamKey, StreamSpec, parse_stream
from camstream.wire import PARTITION_LABEL
from camstream_worker.outputs.hls import sequence
from camstream_worker.outputs.hls.sequence import SequenceStart
from camstream_worker.state import Phase, StreamStatus


def key_of(body: Mapping[str, Any]) -> StreamKey:
    meta = body.get("metadata") or {}
    return StreamKey(str(meta.get("namespace", "")), str(meta.get("name", "")))


def partition_of(key: StreamKey, partitions: int) -> int:
    return ring.partition_of(ring.stream_key(key.namespace, key.name), partitions)


def streams_to_run(
    doc: RingDoc | None, me: str, bodies: Iterable[Mapping[str, Any]]
) -> dict[StreamKey, StreamSpec]:
    if doc is None:
        return {}
    mine = partitions_for(doc, me)
    out: dict[StreamKey, StreamSpec] = {}
    for body in bodies:
        key = key_of(body)
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if partition_of(key, doc.partitions) not in mine:
            continue
        try:
            spec = parse_stream(body, default_namespace=key.namespace)
        except SpecError:
            continue  # the operator marks it Invalid; nothing to run
        if spec.enabled:
            out[key] = spec
    return out


def confirmations(
    doc: RingDoc | None,
    me: str,
    desired: Mapping[StreamKey, StreamSpec],
    *,
    engine_status: Callable[[StreamKey], StreamStatus | None],
    reported_phase: Callable[[StreamKey], str | None],
    covered: frozenset[int],
) -> frozenset[tuple[int, int]]:
    if doc is None:
        return frozenset()
    incoming = handoffs_to(doc, me)
    by_partition: dict[int, list[StreamSpec]] = {p: [] for p in incoming}
    for key, spec in desired.items():
        p = partition_of(key, doc.partitions)
        if p in by_partition:
            by_partition[p].append(spec)
    out: set[tuple[int, int]] = set()
    for p, h in incoming.items():
        if p not in covered:
            continue
        if all(_settled(s, engine_status(s.key), reported_phase(s.key)) for s in by_partition[p]):
            out.add((p, h.id))
    return frozenset(out)


def _settled(spec: StreamSpec, status: StreamStatus | None, reported: str | None) -> bool:
    if status is None:
        return False
    if status.phase in (Phase.LIVE, Phase.FAILED):
        return True
    if spec.source.protocol == "rtmp" and status.phase is not Phase.PENDING:
        return True
    return reported != Phase.LIVE.value


def worker_status(status: StreamStatus, me: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(fields, conditions) the serving worker writes; no secrets in any of them."""
    fields: dict[str, Any] = {
        "phase": status.phase.value,
        "reason": status.reason,
        "message": status.message,
        "worker": me,
    }
    if status.sequence_lead is not None:
        fields["hlsSequenceLead"] = status.sequence_lead
    live = status.phase is Phase.LIVE
    degraded = status.phase in (Phase.RECONNECTING, Phase.FAILED)
    conds = [
        condition("Live", live, "SegmentsWritten" if live else (status.reason or "NotLive")),
        condition("Degraded", degraded, status.reason or ("Healthy" if not degraded else "")),
    ]
    return fields, conds


def listed_cover(parts: frozenset[int], listed_partitions: int, partitions: int) -> frozenset[int]:
    """Which partitions of a ring of `partitions` a watch listed on `parts` has seen whole.

    `parts` are partition labels of a ring of `listed_partitions`. Partition q
    of a larger ring holds the keys of old partition q mod listed_partitions;
    of a smaller one, those of every old partition congruent to q.
    """
    if partitions == listed_partitions:
        return parts
    if partitions > listed_partitions:
        return frozenset(q for q in range(partitions) if q % listed_partitions in parts)
    return frozenset(
        q
        for q in range(partitions)
        if all(p in parts for p in range(q, listed_partitions, partitions))
    )


def relabelled_for_larger_ring(body: Mapping[str, Any], doc: RingDoc | None, me: str) -> bool:
    """True when a stream left our label selector only because the ring grew.

    The operator relabels every stream after growing the ring; a worker that
    has not seen the grown ring yet watches the old labels, and the new label
    makes the watch report the stream as gone. `body` is the stream as it is
    now (read again: the watch event shows it as it was). Still ours: keep it.
    """
    if doc is None:
        return False
    label = ((body.get("metadata") or {}).get("labels") or {}).get(PARTITION_LABEL)
    try:
        value = int(str(label))
    except ValueError:
        return False
    old = partition_of(key_of(body), doc.partitions)
    return (
        value >= doc.partitions and value % doc.partitions == old and old in partitions_for(doc, me)
    )


def start_sequence(
    now: float,
    segment_seconds: int,
    *,
    source_next: int | None = None,
    recorded_lead: int | None = None,
) -> SequenceStart:
    """Where a stream this worker starts begins its media sequence.

    `source_next`: the next number of a previous owner that is still writing
    (a handoff), read from its playlist at `now`; the new owner must outrun it.
    `recorded_lead`: the status's hlsSequenceLead, what a previous owner that
    can no longer be asked wrote about itself (a failover after a crash).
    """
    if source_next is not None:
        return SequenceStart(source_next, ahead_of=now)
    return SequenceStart(sequence.after_crash(now, segment_seconds, recorded_lead))


def recorded_lead(body: Mapping[str, Any]) -> int | None:
    value = (body.get("status") or {}).get("hlsSequenceLead")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def next_sequence_from_playlist(text: str) -> int | None:
    """The number the next segment of this live playlist would carry."""
    sequence: int | None = None
    segments = 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            try:
                sequence = int(line.split(":", 1)[1].strip())
            except ValueError:
                return None
        elif line.startswith("#EXTINF:"):
            segments += 1
    return None if sequence is None else sequence + segments
