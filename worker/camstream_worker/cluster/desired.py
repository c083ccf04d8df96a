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
  (nothing to lose). Behind an ingest edge (`push_via_edge`, #15) the camera
  does reach the target during the handoff (the edge feeds both owners), so
  a pushed stream the source has live is settled only once it is live here:
  make-before-break, as for pulled streams. Confirming needs the stream
  watch to cover the partition, so a partition with streams not listed yet
  is never confirmed empty.
- `superseded`: partitions failed over away from this worker while it
  could not see the ring; their streams must restart, not continue.
- `stream_report`: the status the serving worker writes (all of it: the
  operator writes no status).
- `start_sequence`: where a newly started stream's HLS media sequence begins
  (the rules and why are in camstream_worker/outputs/hls/sequence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from camstream import ring
from camstream.conditions import condition
from camstream.handoff import RingDoc, handoffs_to, partitions_for
from camstream.spec import SpecError, StreamKey, StreamSpec, parse_stream
from camstream.wire import playlist_path
from camstream_worker.outputs.hls import sequence
from camstream_worker.outputs.hls.sequence import SequenceStart
from camstream_worker.state import Phase, StreamStatus


@dataclass(frozen=True, slots=True)
class Notice:
    """An Event to post on the CameraStream (never contains secrets)."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Report:
    """The status fields and conditions the serving worker wants, and an Event if any.

    `lazy` fields ride along with a write that happens anyway (or fill a gap)
    but never cause one: status.partition changes for every stream when the
    ring grows, and growth must cost no write per stream.
    """

    fields: dict[str, Any]
    conditions: list[dict[str, Any]]
    notice: Notice | None
    lazy: dict[str, Any] = field(default_factory=dict)


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


def superseded(previous: RingDoc | None, doc: RingDoc | None, me: str) -> frozenset[int]:
    """Partitions `me` served in `previous` that `doc` gives another worker without a handoff.

    That is a failover of `me` (judged silent: cut off from the API server, or
    its pod not Ready) it could not see happen: its copies of those streams
    ran on past their term, beside the new owner's. They must stop, and if
    the ring hands the partitions back they start again as a handoff's
    target, numbering above the new owner (never continuing the old copy,
    which runs behind it). A completed handoff from `me` is not this.
    """
    if previous is None or doc is None or previous.partitions != doc.partitions:
        return frozenset()
    handing = {h.partition for h in previous.handoffs if h.source == me}
    return frozenset(
        p
        for p, (was, now) in enumerate(zip(previous.serving, doc.serving, strict=True))
        if was == me and now != me and p not in handing
    )


def confirmations(
    doc: RingDoc | None,
    me: str,
    desired: Mapping[StreamKey, StreamSpec],
    *,
    engine_status: Callable[[StreamKey], StreamStatus | None],
    reported_phase: Callable[[StreamKey], str | None],
    covered: frozenset[int],
    push_via_edge: bool = False,
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
        if all(
            _settled(s, engine_status(s.key), reported_phase(s.key), push_via_edge)
            for s in by_partition[p]
        ):
            out.add((p, h.id))
    return frozenset(out)


def _settled(
    spec: StreamSpec, status: StreamStatus | None, reported: str | None, push_via_edge: bool
) -> bool:
    if status is None:
        return False
    if status.phase in (Phase.LIVE, Phase.FAILED):
        return True
    if spec.source.protocol == "rtmp" and status.phase is not Phase.PENDING and not push_via_edge:
        return True
    return reported != Phase.LIVE.value


def playback_path(key: StreamKey) -> str:
    return playlist_path(key.namespace, key.name)


def stream_report(
    body: Mapping[str, Any],
    *,
    partitions: int,
    me: str,
    engine_status: StreamStatus | None,
    wall_offset_low: float = 0.0,
) -> Report | None:
    """What the serving worker writes on one stream of its partitions; None: nothing yet.

    The serving worker owns the whole status (the operator writes none: at
    100k streams the API server affords about one write per stream, so the
    one who knows the phase writes it, when it changes). A stream whose spec
    the worker refuses is marked Invalid with the checker's message (which
    never echoes a secret or a URL); a paused one Stopped; a running one gets
    the engine's phase. No secrets in any of it. hlsSequenceLead is restated
    on the cluster's clock with `wall_offset_low`, the lower bound of cluster
    time minus this machine's wall clock when the stream was started here
    (fixed per stream, so the status does not change when the estimate does).
    """
    key = key_of(body)
    meta = body.get("metadata") or {}
    lazy = {"partition": partition_of(key, partitions)}
    fields: dict[str, Any] = {
        "playbackPath": playback_path(key),
        "observedGeneration": int(meta.get("generation") or 0),
        "worker": me,
    }
    try:
        spec = parse_stream(body, default_namespace=key.namespace)
    except SpecError as err:
        message = str(err)
        fields.update(phase="Invalid", reason="InvalidSpec", message=message)
        conds = [
            condition("Valid", False, "InvalidSpec", message),
            condition("Live", False, "InvalidSpec"),
            condition("Degraded", False, "InvalidSpec"),
        ]
        return Report(fields, conds, Notice("Warning", "InvalidSpec", message), lazy)
    valid = condition("Valid", True, "SpecAccepted")
    if not spec.enabled:
        fields.update(phase="Stopped", reason="Disabled", message="spec.enabled is false")
        paused = [condition("Live", False, "Disabled"), condition("Degraded", False, "Disabled")]
        return Report(fields, [valid, *paused], None, lazy)
    if engine_status is None:
        return None  # not started here yet: nothing true to say
    fields.update(
        phase=engine_status.phase.value,
        reason=engine_status.reason,
        message=engine_status.message,
    )
    if engine_status.sequence_lead is not None:
        fields["hlsSequenceLead"] = sequence.cluster_lead(
            engine_status.sequence_lead, wall_offset_low, spec.hls.segment_seconds
        )
    live = engine_status.phase is Phase.LIVE
    degraded = engine_status.phase in (Phase.RECONNECTING, Phase.FAILED)
    reason = engine_status.reason
    conds = [
        valid,
        condition("Live", live, "SegmentsWritten" if live else (reason or "NotLive")),
        condition("Degraded", degraded, reason or ("Healthy" if not degraded else "")),
    ]
    return Report(fields, conds, None, lazy)


def start_sequence(
    now: float,
    segment_seconds: int,
    *,
    source_next: int | None = None,
    recorded_lead: int | None = None,
    wall_offset_high: float = 0.0,
) -> SequenceStart:
    """Where a stream this worker starts begins its media sequence.

    `now` is this machine's wall clock. `source_next`: the next number of a
    previous owner that is still writing (a handoff), read from its playlist
    at `now`; the new owner must outrun it. `recorded_lead`: the status's
    hlsSequenceLead, what a previous owner that can no longer be asked wrote
    about itself (a failover after a crash), over the cluster's clock, which
    reads at most `now + wall_offset_high` here.
    """
    if source_next is not None:
        return SequenceStart(source_next, ahead_of=now)
    cluster_now = now + wall_offset_high
    return SequenceStart(sequence.after_crash(cluster_now, segment_seconds, recorded_lead), at=now)


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
