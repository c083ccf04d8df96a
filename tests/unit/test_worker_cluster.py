"""The worker's cluster-mode decisions (worker/camstream_worker/cluster/desired.py)
and its owner locator: what to run, what to confirm, what to report."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from camstream import ring
from camstream.handoff import Handoff, RingDoc
from camstream.spec import StreamKey
from camstream_worker.cluster import desired
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


def test_worker_status_fields() -> None:
    k = StreamKey("ns", "a")
    fields, conds = desired.worker_status(
        StreamStatus(k, "rtsp", Phase.RECONNECTING, reason="SourceUnreachable"), "w-3"
    )
    assert fields == {
        "phase": "Reconnecting",
        "reason": "SourceUnreachable",
        "message": "",
        "worker": "w-3",
    }
    by_type = {c["type"]: c for c in conds}
    assert by_type["Live"]["status"] == "False" and by_type["Degraded"]["status"] == "True"


def test_start_sequence_picks_the_rule_for_the_case() -> None:
    fresh = desired.start_sequence(1000.0, 2)
    assert fresh == SequenceStart(500)
    handoff = desired.start_sequence(1000.0, 2, source_next=400, recorded_lead=90)
    assert handoff == SequenceStart(400, ahead_of=1000.0)  # the live playlist wins
    failover = desired.start_sequence(1000.0, 2, recorded_lead=3)
    assert failover.number > 500 + 3


def test_the_serving_worker_records_its_lead_once_known() -> None:
    k = StreamKey("ns", "a")
    fields, _ = desired.worker_status(StreamStatus(k, "rtsp", Phase.LIVE, sequence_lead=4), "w")
    assert fields["hlsSequenceLead"] == 4
    fields, _ = desired.worker_status(StreamStatus(k, "rtsp", Phase.CONNECTING), "w")
    assert "hlsSequenceLead" not in fields
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


@given(
    bits=st.integers(1, 6),
    grow_bits=st.integers(0, 2),
    parts=st.sets(st.integers(0, 63)),
    names=st.lists(st.text("abcdefgh", min_size=1, max_size=6), max_size=30),
)
def test_a_watch_listed_for_a_smaller_ring_covers_the_same_keys(
    bits: int, grow_bits: int, parts: set[int], names: list[str]
) -> None:
    old, new = 1 << bits, 1 << (bits + grow_bits)
    listed = frozenset(p for p in parts if p < old)
    cover = desired.listed_cover(listed, old, new)
    for name in names:
        key = ring.stream_key("ns", name)
        # Covered under the new size exactly when the listing saw the key's old label.
        assert (ring.partition_of(key, new) in cover) == (ring.partition_of(key, old) in listed)
    assert desired.listed_cover(cover, new, old) == listed  # and back, for a shrink


def test_a_stream_relabelled_for_a_grown_ring_is_still_ours() -> None:
    doc = RingDoc(partitions=P, version=1, table=None, serving=("me", "other") * (P // 2))
    mine = next(n for n in "abcdefghijklmnop" if part(n) % 2 == 0)
    theirs = next(n for n in "abcdefghijklmnop" if part(n) % 2 == 1)

    def relabelled(name: str, bigger: int) -> dict[str, Any]:
        b = body(name)
        label = str(ring.partition_of(f"ns/{name}", bigger))
        b["metadata"]["labels"] = {"camstream.io/partition": label}
        return b

    grown = [relabelled(n, P * 4) for n in (mine, theirs)]
    big = [b for b in grown if int(b["metadata"]["labels"]["camstream.io/partition"]) >= P]
    assert big
    for b in big:  # those whose label left the old range
        ours = b["metadata"]["name"] == mine
        assert desired.relabelled_for_larger_ring(b, doc, "me") is ours
    # A label that is not the key's partition under a bigger ring is not ours.
    wrong = relabelled(mine, P * 4)
    wrong["metadata"]["labels"]["camstream.io/partition"] = str(part(mine) + P + 1)
    assert not desired.relabelled_for_larger_ring(wrong, doc, "me")
    assert not desired.relabelled_for_larger_ring(relabelled(mine, P), doc, "me")  # same size
    assert not desired.relabelled_for_larger_ring(grown[0], None, "me")
