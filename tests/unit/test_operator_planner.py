"""Planning rounds (operator/planner.py): ring plan + effective owners + handoff.

Scenario table style: each test walks a few rounds of membership change and
checks the stored document, as the operator would write it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from camstream import handoff
from camstream.handoff import RingDoc
from camstream_operator import planner
from camstream_operator.membership import Membership

P = 16


def members(
    up: set[str],
    *,
    existing: set[str] | None = None,
    leaving: set[str] = frozenset(),
    confirmed: dict[str, set[tuple[int, int]]] | None = None,
    silent: set[str] = frozenset(),
    returning: set[str] = frozenset(),
) -> Membership:
    return Membership(
        existing=frozenset(existing if existing is not None else up),
        up=frozenset(up),
        leaving=frozenset(leaving),
        addresses={w: "127.0.10.1" for w in up | silent},
        confirmed={w: frozenset(v) for w, v in (confirmed or {}).items()},
        silent=frozenset(silent),
        returning=frozenset(returning),
    )


def confirm_all(doc: RingDoc) -> dict[str, set[tuple[int, int]]]:
    out: dict[str, set[tuple[int, int]]] = {}
    for h in doc.handoffs:
        out.setdefault(h.target, set()).add((h.partition, h.id))
    return out


def settle(doc: RingDoc, up: set[str], now: float, **kw: object) -> RingDoc:
    """Rounds until no handoff is in flight, every target confirming at once."""
    for i in range(10):
        doc = planner.plan_round(doc, members(up, **kw), now=now + i).doc  # type: ignore[arg-type]
        if not doc.handoffs:
            return doc
        doc = planner.plan_round(
            doc,
            members(up, confirmed=confirm_all(doc), **kw),
            now=now + i,  # type: ignore[arg-type]
        ).doc
    raise AssertionError("did not settle")


def test_first_workers_get_everything_at_once() -> None:
    r = planner.plan_round(handoff.empty_doc(P), members({"w-0", "w-1"}), now=1.0)
    assert r.changed and r.doc.version == 1
    assert set(r.doc.serving) == {"w-0", "w-1"} and r.doc.handoffs == ()
    assert Counter(r.doc.serving) == {"w-0": 8, "w-1": 8}


def test_steady_state_and_restart_write_nothing() -> None:
    doc = planner.plan_round(handoff.empty_doc(P), members({"w-0", "w-1"}), now=1.0).doc
    again = planner.plan_round(doc, members({"w-0", "w-1"}), now=50.0)
    assert not again.changed and again.doc == doc and again.events == ()


def test_join_moves_only_what_balance_needs_make_before_break() -> None:
    doc = planner.plan_round(handoff.empty_doc(P), members({"w-0", "w-1"}), now=1.0).doc
    r = planner.plan_round(doc, members({"w-0", "w-1", "w-2"}), now=2.0)
    moving = {h.partition for h in r.doc.handoffs}
    assert len(moving) == 5  # 16 over 3 members: the newcomer needs 5 (⌊16/3⌋)
    assert r.doc.serving == doc.serving  # nobody released before confirming
    final = settle(r.doc, {"w-0", "w-1", "w-2"}, 3.0)
    assert sorted(Counter(final.serving).values()) == [5, 5, 6]


def test_crash_fails_over_and_hands_back_the_same_partitions() -> None:
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    home = doc.table.owners if doc.table else ()
    mine = {p for p, o in enumerate(home) if o == "w-1"}
    # w-1 crashes: its pod exists and will restart (its kubelet says not Ready).
    crashed = planner.plan_round(
        doc, members({"w-0", "w-2"}, existing=up, returning={"w-1"}), now=20.0
    ).doc
    assert crashed.table == doc.table  # home table unchanged: hinted handoff only
    assert all(crashed.serving[p] in {"w-0", "w-2"} for p in mine)
    assert crashed.handoffs == ()
    # w-1 is back: the very same partitions return to it, make before break.
    back = planner.plan_round(crashed, members(up), now=30.0).doc
    assert {h.partition for h in back.handoffs} == mine
    assert all(back.serving[p] != "w-1" for p in mine)
    final = settle(back, up, 31.0)
    assert final.serving == home


def test_graceful_leave_moves_everything_away_before_exit() -> None:
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    r = planner.plan_round(doc, members(up, leaving={"w-2"}), now=10.0).doc
    assert "w-2" not in (r.table.owners if r.table else ())
    assert not handoff.settled(r, "w-2")  # still serving until targets confirm
    final = settle(r, up, 11.0, leaving={"w-2"})
    assert handoff.settled(final, "w-2")


def test_gone_worker_is_cleaned_up() -> None:
    doc = settle(handoff.empty_doc(P), {"w-0", "w-1"}, 1.0)
    r = planner.plan_round(doc, members({"w-0"}), now=5.0).doc  # w-1's pod is gone
    assert set(r.serving) == {"w-0"} and set(r.table.owners if r.table else ()) == {"w-0"}


def test_nobody_up_changes_nothing() -> None:
    doc = settle(handoff.empty_doc(P), {"w-0"}, 1.0)
    r = planner.plan_round(doc, members(set(), existing={"w-0"}), now=5.0)
    assert r.warning and r.doc.serving == doc.serving and r.doc.table == doc.table
    # The owners keep their addresses: whether they still serve is not known
    # here, and a forward that fails costs no more than no forward at all.
    assert r.doc.addresses == doc.addresses and not r.changed


def test_rolling_restart_keeps_the_home_table_and_moves_each_partition_out_and_back() -> None:
    """riak_core's claimant keeps a restarting node: no new homes, only hinted handoff."""
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    home = doc.table.owners if doc.table else ()
    mine = {p for p, o in enumerate(home) if o == "w-2"}
    # SIGTERM: w-2 is leaving but its ordinal stays: it comes back.
    leaving = planner.plan_round(doc, members(up, leaving={"w-2"}, returning={"w-2"}), now=10.0).doc
    assert leaving.table == doc.table
    assert {h.partition for h in leaving.handoffs} == mine  # out, make before break
    moved_out = settle(leaving, up, 11.0, leaving={"w-2"}, returning={"w-2"})
    assert handoff.settled(moved_out, "w-2") and moved_out.table == doc.table
    # Gone for a moment, then back with the same name: the same partitions return.
    away = planner.plan_round(moved_out, members({"w-0", "w-1"}, returning={"w-2"}), now=20.0).doc
    assert away.serving == moved_out.serving and away.table == doc.table
    back = settle(away, up, 30.0)
    assert back.serving == home and back.table == doc.table


def test_silent_minority_fails_over() -> None:
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    r = planner.plan_round(doc, members({"w-0", "w-1"}, existing=up, silent={"w-2"}), now=9.0)
    assert "w-2" not in r.doc.serving and not r.frozen
    assert r.doc.table == doc.table  # home kept: a silent worker may be back soon


def test_silent_majority_is_frozen_not_failed_over() -> None:
    """Most workers silent at once: more likely our blindness than their deaths."""
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    r = planner.plan_round(doc, members({"w-0"}, existing=up, silent={"w-1", "w-2"}), now=9.0)
    assert r.frozen == {"w-1", "w-2"} and "silent" in r.warning
    assert r.doc.serving == doc.serving and r.doc.table == doc.table and not r.doc.handoffs
    everyone = planner.plan_round(doc, members(set(), existing=up, silent=up), now=9.0)
    assert everyone.doc.serving == doc.serving and everyone.frozen == up


def test_workers_going_silent_a_renewal_apart_are_frozen_together() -> None:
    """A common cause silences everyone within one renewal period, not at once.

    w-2 is silent first; w-0 and w-1 have missed a renewal (late): freeze, so
    the first to cross the line does not have its partitions piled on the others.
    """
    up = {"w-0", "w-1", "w-2"}
    doc = settle(handoff.empty_doc(P), up, 1.0)
    m = dataclasses.replace(
        members({"w-0", "w-1"}, existing=up, silent={"w-2"}), late=frozenset({"w-0", "w-1"})
    )
    hold = planner.hold_silent(m, planner.Releases(), now=100.0)
    assert hold.common_cause and hold.held == {"w-2"} and "silent at once" in hold.warning
    r = planner.plan_round(doc, m, now=9.0, held=hold.held)
    assert r.doc.serving == doc.serving and r.frozen == {"w-2"}


def test_silent_workers_are_failed_over_one_per_interval_longest_silent_first() -> None:
    up = {f"w-{i}" for i in range(5)}
    m = dataclasses.replace(
        members(up - {"w-3", "w-4"}, existing=up, silent={"w-3", "w-4"}),
        quiet_for={"w-3": 16.0, "w-4": 20.0},
    )
    first = planner.hold_silent(m, planner.Releases(), now=100.0, interval=10.0)
    assert not first.common_cause
    assert first.releases.workers == {"w-4"} and first.held == {"w-3"}
    soon = planner.hold_silent(m, first.releases, now=105.0, interval=10.0)
    assert soon.held == {"w-3"} and soon.releases == first.releases
    later = planner.hold_silent(m, soon.releases, now=110.0, interval=10.0)
    assert later.held == frozenset() and later.releases.workers == {"w-3", "w-4"}
    # w-4 heard again: forgotten, so a later silence of it waits its turn again.
    heard = dataclasses.replace(m, silent=frozenset({"w-3"}), up=m.up | {"w-4"})
    after = planner.hold_silent(heard, later.releases, now=111.0, interval=10.0)
    assert after.releases.workers == {"w-3"}


def test_handoff_sightings_count_from_first_sight_per_attempt() -> None:
    h = handoff.Handoff(3, "w-0", "w-1", 9, started=1e9)  # stamped by a clock far ahead
    seen = planner.HandoffSightings()
    assert seen.ages([h], 50.0) == {9: 0.0}
    assert seen.ages([h], 62.0) == {9: 12.0}
    retried = dataclasses.replace(h, attempt=2)
    assert seen.ages([retried], 63.0) == {9: 0.0}  # a new attempt: a full timeout again
    seen.blind_until(70.0)  # could not watch until 70: that time counts for nobody
    assert seen.ages([retried], 75.0) == {9: 5.0}
    assert seen.ages([], 76.0) == {}  # finished handoffs are forgotten
