"""The worker's cluster-mode decisions (worker/camstream_worker/cluster/desired.py)
and its owner locator: what to run, what to confirm, what to report."""

from __future__ import annotations

from typing import Any

from camstream import ring
from camstream.handoff import Handoff, RingDoc
from camstream.spec import StreamKey
from camstream_worker.cluster import desired
from camstream_worker.cluster import status as status_writer
from camstream_worker.cluster.locator import RingLocator
from camstream_worker.outputs.hls.sequence import SequenceStart
from camstream_worker.state import Phase, StreamStatus

P = 4


def body(name: str, protocol: str = "synthetic", **extra: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"protocol": protocol}
    if protocol == "rtmp":
        source["streamKeySecretRef"] = {"name": "k"}
    return {
        "kind": "CameraStream",
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"source": source, **extra},
    }


def part(name: str) -> int:
    return ring.partition_of(f"ns/{name}", P)


# Stream names chosen to cover partitions; looked up once.
NAMES = [f"cam-{i}" for i in range(40)]
BY_PART: dict[int, list[str]] = {}
for n in NAMES:
    BY_PART.setdefault(part(n), []).append(n)


def doc(serving: tuple[str, ...], handoffs: tuple[Handoff, ...] = ()) -> RingDoc:
    return RingDoc(
        P,
        1,
        ring.RingTable(P, 1, serving),
        serving,
        handoffs,
        {"w-0": "127.0.10.1", "w-1": "127.0.10.2"},
    )


def status(key: StreamKey, phase: Phase) -> StreamStatus:
    return StreamStatus(key=key, protocol="synthetic", phase=phase)


def test_streams_to_run_are_served_and_incoming_partitions() -> None:
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    bodies = [body(n) for n in NAMES]
    run = desired.streams_to_run(d, "w-0", bodies)
    assert {part(k.name) for k in run} == {0, 1}
    assert len(run) == len(BY_PART[0]) + len(BY_PART[1])


def test_invalid_disabled_and_deleted_streams_do_not_run() -> None:
    d = doc(("w-0",) * P)
    bad = body("bad", "rtsp")  # no url
    off = body("off", enabled=False)
    gone = body("gone")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert desired.streams_to_run(d, "w-0", [bad, off, gone, body("ok")]).keys() == {
        StreamKey("ns", "ok")
    }


def confirm(
    d: RingDoc,
    phases: dict[str, Phase],
    reported: dict[str, str] | None = None,
    covered: frozenset[int] = frozenset(range(P)),
    protocol: str = "synthetic",
    push_via_edge: bool = False,
) -> frozenset[tuple[int, int]]:
    bodies = [body(n, protocol) for n in NAMES]
    run = desired.streams_to_run(d, "w-0", bodies)
    return desired.confirmations(
        d,
        "w-0",
        run,
        engine_status=lambda k: status(k, phases[k.name]) if k.name in phases else None,
        reported_phase=lambda k: (reported or {}).get(k.name, "Live"),
        covered=covered,
        push_via_edge=push_via_edge,
    )


def test_confirm_only_when_every_stream_of_the_partition_is_live() -> None:
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    names = BY_PART[1]
    almost = {n: Phase.LIVE for n in names[:-1]} | {names[-1]: Phase.CONNECTING}
    assert confirm(d, almost) == frozenset()
    assert confirm(d, {n: Phase.LIVE for n in names}) == {(1, 9)}
    # Not confirmed while the watch does not cover the partition yet.
    assert confirm(d, {n: Phase.LIVE for n in names}, covered=frozenset({0})) == frozenset()


def test_nothing_to_lose_confirms_and_failed_is_settled() -> None:
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    names = BY_PART[1]
    connecting = {n: Phase.CONNECTING for n in names}
    assert confirm(d, connecting, reported={n: "Reconnecting" for n in names}) == {(1, 9)}
    assert confirm(d, {n: Phase.FAILED for n in names}) == {(1, 9)}


def test_rtmp_push_streams_confirm_once_started() -> None:
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    names = BY_PART[1]
    assert confirm(d, {n: Phase.CONNECTING for n in names}, protocol="rtmp") == {(1, 9)}
    assert confirm(d, {n: Phase.PENDING for n in names}, protocol="rtmp") == frozenset()


def test_behind_the_edge_a_pushed_stream_confirms_only_once_its_publisher_is_live() -> None:
    # The edge feeds the target beside the source (#15): a stream the source
    # has live waits for the publisher here, as a pulled stream does.
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    names = BY_PART[1]
    waiting = {n: Phase.CONNECTING for n in names}
    assert confirm(d, waiting, protocol="rtmp", push_via_edge=True) == frozenset()
    live = {n: Phase.LIVE for n in names}
    assert confirm(d, live, protocol="rtmp", push_via_edge=True) == {(1, 9)}
    # A camera live nowhere: nothing to wait for.
    nowhere = {n: "Reconnecting" for n in names}
    assert confirm(d, waiting, nowhere, protocol="rtmp", push_via_edge=True) == {(1, 9)}


def test_empty_incoming_partition_confirms_at_once() -> None:
    h = Handoff(1, "w-1", "w-0", 9, 0.0)
    d = doc(("w-0", "w-1", "w-1", "w-1"), (h,))
    out = desired.confirmations(
        d,
        "w-0",
        {},
        engine_status=lambda k: None,
        reported_phase=lambda k: None,
        covered=frozenset({1}),
    )
    assert out == {(1, 9)}


def report(b: dict[str, Any], st_: StreamStatus | None) -> desired.Report | None:
    return desired.stream_report(b, partitions=P, me="w-3", engine_status=st_)


def test_the_serving_worker_writes_the_whole_status() -> None:
    b = body("a")
    b["metadata"]["generation"] = 7
    r = report(b, StreamStatus(StreamKey("ns", "a"), "rtsp", Phase.RECONNECTING, reason="Gone"))
    assert r is not None and r.notice is None
    assert r.fields == {
        "phase": "Reconnecting",
        "reason": "Gone",
        "message": "",
        "worker": "w-3",
        "playbackPath": "/streams/ns/a/index.m3u8",
        "observedGeneration": 7,
    }
    assert r.lazy == {"partition": part("a")}
    by_type = {c["type"]: c for c in r.conditions}
    assert by_type["Live"]["status"] == "False" and by_type["Degraded"]["status"] == "True"
    assert by_type["Valid"]["status"] == "True"
    assert report(b, None) is None  # not started here yet: nothing to say


def test_a_grown_ring_writes_no_status_but_the_next_write_carries_the_partition() -> None:
    b = body("a")
    live = StreamStatus(StreamKey("ns", "a"), "rtsp", Phase.LIVE)
    first = status_writer.wanted_patch(b, report(b, live))  # type: ignore[arg-type]
    assert first is not None and first["partition"] == part("a")  # fills the gap
    b["status"] = first
    grown = desired.stream_report(b, partitions=P * 4, me="w-3", engine_status=live)
    assert grown is not None and status_writer.wanted_patch(b, grown) is None  # growth: no write
    moving = StreamStatus(StreamKey("ns", "a"), "rtsp", Phase.RECONNECTING, reason="Gone")
    later = desired.stream_report(b, partitions=P * 4, me="w-3", engine_status=moving)
    patch = status_writer.wanted_patch(b, later)  # type: ignore[arg-type]
    assert patch is not None and patch["partition"] == ring.partition_of("ns/a", P * 4)


def test_invalid_and_paused_streams_are_reported_without_running() -> None:
    bad = body("bad", "rtsp")  # no url: refused beyond the schema
    r = report(bad, None)
    assert r is not None and r.fields["phase"] == "Invalid" and r.fields["reason"] == "InvalidSpec"
    assert r.notice is not None and r.notice.reason == "InvalidSpec"
    assert {c["type"]: c["status"] for c in r.conditions}["Valid"] == "False"
    off = report(body("off", enabled=False), None)
    assert off is not None and off.fields["phase"] == "Stopped" and off.notice is None


def test_start_sequence_picks_the_rule_for_the_case() -> None:
    fresh = desired.start_sequence(1000.0, 2)
    assert fresh == SequenceStart(500, at=1000.0)  # by the clock, moving on until cut
    handoff = desired.start_sequence(1000.0, 2, source_next=400, recorded_lead=90)
    assert handoff == SequenceStart(400, ahead_of=1000.0)  # the live playlist wins
    failover = desired.start_sequence(1000.0, 2, recorded_lead=3)
    assert failover.number > 500 + 3
    # This machine's clock 8 s behind the cluster's: plan on the cluster's.
    behind = desired.start_sequence(992.0, 2, wall_offset_high=8.0)
    assert behind == SequenceStart(500, at=992.0)


def test_the_serving_worker_records_its_lead_once_known() -> None:
    k = StreamKey("ns", "a")
    live = report(body("a"), StreamStatus(k, "rtsp", Phase.LIVE, sequence_lead=4))
    assert live is not None and live.fields["hlsSequenceLead"] == 4
    # Our clock 8 s behind the cluster's: 4 segments fewer over the cluster's clock.
    behind = desired.stream_report(
        body("a"),
        partitions=P,
        me="w-3",
        engine_status=StreamStatus(k, "rtsp", Phase.LIVE, sequence_lead=4),
        wall_offset_low=8.0,
    )
    assert behind is not None and behind.fields["hlsSequenceLead"] == 4 - 8 // 2  # 2 s segments
    starting = report(body("a"), StreamStatus(k, "rtsp", Phase.CONNECTING))
    assert starting is not None and "hlsSequenceLead" not in starting.fields
    assert desired.recorded_lead({"status": {"hlsSequenceLead": 4}}) == 4
    assert desired.recorded_lead({"status": {"hlsSequenceLead": "4"}}) is None
    assert desired.recorded_lead({}) is None


def test_next_sequence_from_playlist() -> None:
    text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n"
    assert desired.next_sequence_from_playlist(text) == 43
    assert desired.next_sequence_from_playlist("#EXTM3U\n") is None


def test_locator_routes_to_the_serving_worker() -> None:
    d = doc(("w-0", "w-1", "w-1", "w-1"))
    loc = RingLocator("w-0", 8080, lambda: d)
    mine, theirs = StreamKey("ns", BY_PART[0][0]), StreamKey("ns", BY_PART[2][0])
    assert loc.owner_url(mine) is None
    assert loc.owner_url(theirs) == "http://127.0.10.2:8080"
    assert RingLocator("w-0", 8080, lambda: None).owner_url(theirs) is None
    rtmp = RingLocator("w-0", 8080, lambda: d, rtmp_port=1935)
    assert rtmp.owner_rtmp(theirs) == ("127.0.10.2", 1935) and rtmp.owner_rtmp(mine) is None


def test_a_handoff_target_takes_the_publisher_itself() -> None:
    # The edge feeds a handoff's target directly; its front must not relay
    # that publisher back to the source (servers/rtmp/front.py).
    incoming = StreamKey("ns", BY_PART[2][0])
    d = doc(("w-0", "w-1", "w-1", "w-1"), (Handoff(2, "w-1", "w-0", 9, 0.0),))
    rtmp = RingLocator("w-0", 8080, lambda: d, rtmp_port=1935)
    assert rtmp.owner_rtmp(incoming) is None
    # Players still go to the serving worker until the handoff completes.
    assert rtmp.owner_url(incoming) == "http://127.0.10.2:8080"
    other = RingLocator("w-1", 8080, lambda: d, rtmp_port=1935)
    assert other.owner_rtmp(incoming) is None  # w-1 serves it


def test_a_failover_this_worker_could_not_see_is_superseded_a_handoff_is_not() -> None:
    before = RingDoc(4, 3, None, ("w-3", "w-3", "w-1", "w-3"))
    # Cut off: the operator failed partitions 0 and 1 over to w-1 and w-2 ...
    after = RingDoc(4, 5, None, ("w-1", "w-2", "w-1", "w-3"))
    assert desired.superseded(before, after, "w-3") == {0, 1}
    # ... and is handing 0 back already: still superseded (the copy here must restart).
    back = RingDoc(4, 6, None, after.serving, (Handoff(0, "w-1", "w-3", 9, 0.0),))
    assert desired.superseded(before, back, "w-3") == {0, 1}
    assert desired.superseded(back, back, "w-3") == frozenset()  # said once
    # A handoff from w-3 that completed is an ordinary move.
    handing = RingDoc(4, 3, None, before.serving, (Handoff(1, "w-3", "w-2", 4, 0.0),))
    done = RingDoc(4, 4, None, ("w-3", "w-2", "w-1", "w-3"))
    assert desired.superseded(handing, done, "w-3") == frozenset()
    assert desired.superseded(None, after, "w-3") == frozenset()  # first ring: nothing to compare
    grown = RingDoc(8, 7, None, ("w-1",) * 8)
    assert desired.superseded(before, grown, "w-3") == frozenset()  # another ring size
