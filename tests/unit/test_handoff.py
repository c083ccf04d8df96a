"""The make-before-break state machine (camstream/handoff.py) by scenario.

Each scenario drives `advance` tick by tick over a small ring (4 partitions)
with explicit time, the way the operator's reconciler does, and checks who
serves each partition after each tick. The codec round trip is checked too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream import handoff, ring
from camstream.handoff import EventKind, Handoff, HandoffState, Policy, RingDoc
from camstream.handoff_codec import CodecError, decode_doc, encode_doc

POLICY = Policy(confirm_timeout=10, max_attempts=2, backoff=30, max_starting_per_target=64)


@dataclass
class Ring:
    """A tiny simulated operator loop around `advance`."""

    serving: tuple[str, ...]
    handoffs: tuple[Handoff, ...] = ()
    next_id: int = 1
    now: float = 1000.0
    events: list[handoff.Event] = field(default_factory=list)

    def tick(
        self,
        desired: tuple[str | None, ...],
        up: set[str],
        confirmed: dict[str, set[tuple[int, int]]] | None = None,
        dt: float = 1.0,
        policy: Policy = POLICY,
    ) -> handoff.Outcome:
        self.now += dt
        out = handoff.advance(
            serving=self.serving,
            handoffs=self.handoffs,
            desired=desired,
            up=frozenset(up),
            confirmed={k: frozenset(v) for k, v in (confirmed or {}).items()},
            now=self.now,
            next_id=self.next_id,
            policy=policy,
        )
        self.serving, self.handoffs, self.next_id = out.serving, out.handoffs, out.next_id
        self.events.extend(out.events)
        return out

    def confirm_all(self, target: str) -> dict[str, set[tuple[int, int]]]:
        return {target: {(h.partition, h.id) for h in self.handoffs if h.target == target}}


def kinds(out: handoff.Outcome) -> list[EventKind]:
    return [e.kind for e in out.events]


def test_steady_state_changes_nothing() -> None:
    ring = Ring(serving=("a", "b", "a", "b"))
    out = ring.tick(("a", "b", "a", "b"), {"a", "b"})
    assert out.events == () and out.handoffs == () and ring.serving == ("a", "b", "a", "b")


def test_first_assignment_is_immediate() -> None:
    ring = Ring(serving=("", "", "", ""))
    out = ring.tick(("a", "b", "a", "b"), {"a", "b"})
    assert ring.serving == ("a", "b", "a", "b")
    assert kinds(out) == [EventKind.ASSIGNED] * 4


def test_join_is_make_before_break() -> None:
    """c joins and should own partitions 1 and 3: a/b keep serving until c confirms."""
    ring = Ring(serving=("a", "b", "a", "b"))
    want = ("a", "c", "a", "c")
    out = ring.tick(want, {"a", "b", "c"})
    assert kinds(out) == [EventKind.STARTED, EventKind.STARTED]
    assert ring.serving == ("a", "b", "a", "b")  # nobody released yet
    doc = RingDoc(4, 1, None, ring.serving, ring.handoffs)
    assert handoff.partitions_for(doc, "c") == {1, 3}
    assert handoff.partitions_for(doc, "b") == {1, 3}  # still producing
    # c confirms only partition 1: only that one moves.
    h1 = next(h for h in ring.handoffs if h.partition == 1)
    out = ring.tick(want, {"a", "b", "c"}, {"c": {(1, h1.id)}})
    assert kinds(out) == [EventKind.HANDED_OFF]
    assert ring.serving == ("a", "c", "a", "b")
    out = ring.tick(want, {"a", "b", "c"}, ring.confirm_all("c"))
    assert ring.serving == want and ring.handoffs == ()


def test_stale_confirmation_does_not_count() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    want = ("a", "b", "a", "a")
    ring.tick(want, {"a", "b"})
    (h,) = ring.handoffs
    out = ring.tick(want, {"a", "b"}, {"b": {(1, h.id + 99)}})
    assert out.events == () and ring.serving[1] == "a"


def test_timeout_retries_then_rolls_back_then_retries_later() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    want = ("a", "b", "a", "a")
    ring.tick(want, {"a", "b"})
    first_id = ring.handoffs[0].id
    assert kinds(ring.tick(want, {"a", "b"}, dt=11)) == [EventKind.RETRIED]
    assert ring.handoffs[0].attempt == 2 and ring.handoffs[0].id == first_id
    assert kinds(ring.tick(want, {"a", "b"}, dt=11)) == [EventKind.ROLLED_BACK]
    assert ring.handoffs[0].state is HandoffState.BACKOFF
    doc = RingDoc(4, 1, None, ring.serving, ring.handoffs)
    assert handoff.partitions_for(doc, "b") == frozenset()  # target stops trying
    assert ring.serving[1] == "a"  # the source never stopped
    assert ring.tick(want, {"a", "b"}, dt=10).events == ()  # still backing off
    out = ring.tick(want, {"a", "b"}, dt=25)
    assert kinds(out) == [EventKind.STARTED] and ring.handoffs[0].id != first_id
    ring.tick(want, {"a", "b"}, ring.confirm_all("b"))
    assert ring.serving == want


def test_crash_fails_over_at_once_and_hands_back_without_gap() -> None:
    """a crashes: its partitions go to the fallback b immediately (hinted handoff);
    when a is back they return through a confirmed handoff."""
    ring = Ring(serving=("a", "b", "a", "b"))
    out = ring.tick(("b", "b", "b", "b"), {"b"})  # effective owners with a down
    assert kinds(out) == [EventKind.FAILOVER, EventKind.FAILOVER]
    assert ring.serving == ("b", "b", "b", "b") and ring.handoffs == ()
    home = ("a", "b", "a", "b")
    out = ring.tick(home, {"a", "b"})  # a is back
    assert kinds(out) == [EventKind.STARTED, EventKind.STARTED]
    assert ring.serving == ("b", "b", "b", "b")  # b keeps them until a is live
    ring.tick(home, {"a", "b"}, ring.confirm_all("a"))
    assert ring.serving == home


def test_source_crash_during_handoff_moves_to_target_at_once() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    want = ("a", "b", "a", "a")
    ring.tick(want, {"a", "b"})
    out = ring.tick(("b", "b", "b", "b"), {"b"})
    assert ring.serving == ("b", "b", "b", "b") and ring.handoffs == ()
    assert set(kinds(out)) == {EventKind.FAILOVER}


def test_target_leaving_replaces_the_handoff() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    ring.tick(("a", "b", "a", "a"), {"a", "b", "c"})
    out = ring.tick(("a", "c", "a", "a"), {"a", "c"})
    assert kinds(out) == [EventKind.CANCELLED, EventKind.STARTED]
    assert ring.handoffs[0].target == "c"


def test_desired_back_to_source_cancels() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    ring.tick(("a", "b", "a", "a"), {"a", "b"})
    out = ring.tick(("a", "a", "a", "a"), {"a", "b"})
    assert kinds(out) == [EventKind.CANCELLED] and ring.handoffs == ()


def test_nobody_up_keeps_the_last_owner() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    out = ring.tick((None, None, None, None), set())
    assert out.events == () and ring.serving == ("a", "a", "a", "a")


def test_orphan_owner_is_replaced() -> None:
    """An owner whose pod no longer exists is simply not up."""
    ring = Ring(serving=("gone", "a", "gone", "a"))
    ring.tick(("a", "a", "a", "a"), {"a"})
    assert ring.serving == ("a", "a", "a", "a")


def test_cap_on_concurrent_starts_per_target() -> None:
    ring = Ring(serving=("a", "a", "a", "a"))
    want = ("b", "b", "b", "b")
    policy = Policy(max_starting_per_target=2)
    ring.tick(want, {"a", "b"}, policy=policy)
    assert [h.partition for h in ring.handoffs] == [0, 1]
    ring.tick(want, {"a", "b"}, ring.confirm_all("b"), policy=policy)
    assert ring.serving == ("b", "b", "a", "a")
    # Slots freed by the two completions are used in the same tick.
    assert [h.partition for h in ring.handoffs] == [2, 3]


def test_graceful_leave_completes() -> None:
    ring = Ring(serving=("a", "b", "a", "b"))
    want = ("a", "a", "a", "a")  # b is leaving but still up
    ring.tick(want, {"a", "b"})
    doc = RingDoc(4, 1, None, ring.serving, ring.handoffs)
    assert not handoff.settled(doc, "b")
    ring.tick(want, {"a", "b"}, ring.confirm_all("a"))
    doc = RingDoc(4, 2, None, ring.serving, ring.handoffs)
    assert handoff.settled(doc, "b")


def test_size_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        handoff.advance(
            serving=("a",),
            handoffs=(),
            desired=("a", "a"),
            up=frozenset(),
            confirmed={},
            now=0,
            next_id=1,
        )


names = st.sampled_from(["w-0", "w-1", "w-2", "camstream-worker-10"])


@given(
    st.integers(0, 6),
    st.lists(names, min_size=64, max_size=64),
    st.lists(names | st.just(""), min_size=64, max_size=64),
    st.booleans(),
)
def test_codec_round_trip(bits: int, home: list[str], serving: list[str], same: bool) -> None:
    size = 2**bits
    table = ring.RingTable(size, 3, tuple(home[:size]))
    doc = RingDoc(
        partitions=size,
        version=7,
        table=table,
        serving=table.owners if same else tuple(serving[:size]),
        handoffs=(Handoff(0, "w-0", "w-1", 3, 12.5, 2, HandoffState.BACKOFF, 99.0),),
        addresses={"w-0": "127.0.10.1"},
        next_id=4,
    )
    assert decode_doc(encode_doc(doc)) == doc


def test_codec_is_compact_for_a_large_ring() -> None:
    workers = [f"camstream-worker-{i}" for i in range(300)]
    owners = tuple(workers[(p * 7919) % 300] for p in range(16384))
    data = encode_doc(RingDoc(16384, 1, ring.RingTable(16384, 1, owners), owners))
    assert data["serving"] == "="
    assert sum(len(v) for v in data.values()) < 100_000


def test_codec_rejects_garbage() -> None:
    with pytest.raises(CodecError):
        decode_doc({"partitions": "4", "names": "[]", "serving": "1:notbase64!"})
    with pytest.raises(CodecError):
        decode_doc({"partitions": "4", "serving": "="})  # no home table to refer to


def test_codec_without_home_table() -> None:
    doc = handoff.empty_doc(8)
    assert decode_doc(encode_doc(doc)) == doc


WORKERS = ("a", "b", "c", "d")


@given(
    st.lists(
        st.tuples(
            st.frozensets(st.sampled_from(WORKERS)),  # who is up this round
            st.lists(st.sampled_from(WORKERS), min_size=8, max_size=8),  # desired owners
            st.floats(0.0, 1.0),  # share of in-flight handoffs the targets confirm
            st.floats(0.5, 40.0),  # seconds since the last round
        ),
        min_size=1,
        max_size=25,
    )
)
def test_random_histories_never_break_before_make(
    rounds: list[tuple[frozenset[str], list[str], float, float]],
) -> None:
    """Whatever membership does: a live producer is only replaced by a target that
    confirmed the current handoff; ids are never reused; stable rounds converge."""
    policy = Policy(confirm_timeout=10, max_attempts=2, backoff=30, max_starting_per_target=3)
    ring_ = Ring(serving=("",) * 8)
    seen_ids: set[int] = set()
    for up, wanted, share, dt in rounds:
        desired = tuple(w if w in up else (sorted(up)[0] if up else None) for w in wanted)
        in_flight = [h for h in ring_.handoffs if h.state is HandoffState.STARTING]
        confirmed: dict[str, set[tuple[int, int]]] = {}
        for h in in_flight[: int(len(in_flight) * share)]:
            confirmed.setdefault(h.target, set()).add((h.partition, h.id))
        before = {h.partition: h for h in ring_.handoffs}
        old = ring_.serving
        out = ring_.tick(desired, set(up), confirmed, dt=dt, policy=policy)
        for p, (was, now) in enumerate(zip(old, out.serving, strict=True)):
            if was == now:
                continue
            if was in up:  # a live producer was replaced: only by a confirmed target
                h = before[p]
                assert (h.target, (p, h.id)) == (now, (p, h.id))
                assert (p, h.id) in confirmed.get(now, set())
            else:  # nobody produced it: moved to the desired owner at once
                assert now == desired[p]
        ids = [
            h.id
            for h in out.handoffs
            if h.partition not in before or before[h.partition].id != h.id
        ]
        assert not seen_ids & set(ids)
        seen_ids |= set(ids)
        assert len({h.partition for h in out.handoffs}) == len(out.handoffs)
    # Stable membership with prompt confirmations converges to the desired table.
    if rounds and rounds[-1][0]:
        up, wanted, _, _ = rounds[-1]
        desired = tuple(w if w in up else sorted(up)[0] for w in wanted)
        for _ in range(8):
            confirmed = {}
            for h in ring_.handoffs:
                confirmed.setdefault(h.target, set()).add((h.partition, h.id))
            ring_.tick(desired, set(up), confirmed, dt=100.0, policy=policy)
        assert ring_.serving == desired


@given(
    bits=st.integers(1, 8),
    factor_bits=st.integers(1, 3),
    serving=st.lists(st.sampled_from(["w-0", "w-1", "w-2", ""]), min_size=256, max_size=256),
    names=st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=30),
)
def test_growing_a_ring_moves_no_stream(
    bits: int, factor_bits: int, serving: list[str], names: list[str]
) -> None:
    p = 1 << bits
    members = sorted({s for s in serving[:p] if s}) or ["w-0"]
    doc = RingDoc(
        partitions=p,
        version=7,
        table=ring.plan(None, members, p),
        serving=tuple(serving[:p]),
        addresses={"w-0": "127.0.0.1"},
    )
    grown = handoff.grow(doc, p << factor_bits)
    assert grown.partitions == p << factor_bits and grown.version == 8
    assert grown.addresses == doc.addresses and grown.handoffs == ()
    for name in names:
        key = ring.stream_key("ns", name)
        before, after = ring.partition_of(key, p), ring.partition_of(key, grown.partitions)
        assert grown.serving[after] == doc.serving[before]
        assert grown.table is not None and doc.table is not None
        assert grown.table.owners[after] == doc.table.owners[before]
    # Balanced stays balanced: every share is multiplied alike.
    counts = [grown.table.owners.count(m) for m in members]
    assert max(counts) - min(counts) <= (1 << factor_bits)


def test_only_a_settled_ring_grows() -> None:
    doc = RingDoc(partitions=4, version=1, table=None, serving=("a",) * 4)
    busy = dataclasses.replace(doc, handoffs=(Handoff(0, "a", "b", id=1, started=0.0),))
    with pytest.raises(ValueError, match="handoffs in flight"):
        handoff.grow(busy, 8)
    with pytest.raises(ValueError, match="cannot grow"):
        handoff.grow(doc, 2)


@given(
    skew=st.floats(min_value=-7200, max_value=7200),
    seen=st.floats(min_value=0, max_value=200),
    state=st.sampled_from(list(HandoffState)),
)
def test_with_ages_the_writers_clock_is_never_read(
    skew: float, seen: float, state: HandoffState
) -> None:
    """A handoff stamped by a replica whose clock is hours off times out by what we saw."""
    now = 5000.0
    h = Handoff(1, "a", "b", 7, started=now + skew, state=state, retry_at=now + skew)

    def step(ages: dict[int, float]) -> handoff.Outcome:
        return handoff.advance(
            serving=("a", "a"),
            handoffs=[h],
            desired=("a", "b"),
            up=frozenset({"a", "b"}),
            confirmed={},
            now=now,
            next_id=8,
            policy=POLICY,
            ages=ages,
        )

    out = step({7: seen})
    if state is HandoffState.STARTING:
        timed_out = seen > POLICY.confirm_timeout
        assert (kinds(out) == [EventKind.RETRIED]) is timed_out
    else:
        assert (kinds(out) == [EventKind.STARTED]) is (seen >= POLICY.backoff)
    # A handoff this replica has not seen before (a new leader) gets a full timeout.
    assert step({}).events == ()
