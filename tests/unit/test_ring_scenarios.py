"""Scenario tables for the ring: node-down cases (riak_core style) and the
membership changes a StatefulSet goes through (scale, rolling update, crash,
operator restart, resize). Each row is a case a reader can check by hand.
"""

from __future__ import annotations

from collections import Counter

import pytest

from camstream import ring

# A hand-written ring of 8 partitions over a, b, c, so the expected fallbacks
# can be read off directly: walk right from the partition, wrap at the end.
#            0    1    2    3    4    5    6    7
OWNERS = ("a", "b", "a", "c", "b", "c", "a", "b")
TABLE = ring.RingTable(partitions=8, version=1, owners=OWNERS)


@pytest.mark.parametrize(
    ("up", "partition", "n", "expected"),
    [
        ({"a", "b", "c"}, 0, 3, ["a", "b", "c"]),  # all up: owner, then next distinct owners
        ({"a", "b", "c"}, 7, 3, ["b", "a", "c"]),  # the walk wraps past partition 7
        ({"a", "b", "c"}, 5, 1, ["c"]),  # n = 1 is just the owner
        ({"b", "c"}, 0, 2, ["b", "c"]),  # owner a down: first fallback is b (partition 1)
        ({"b", "c"}, 6, 3, ["b", "c"]),  # fewer up members than n: shorter list
        ({"a"}, 4, 3, ["a"]),  # b and c down: the only survivor
        (set(), 3, 3, []),  # everyone down: nobody to ask
        ({"c", "z"}, 0, 3, ["c"]),  # z is up but owns nothing: never listed
        ({"a", "b", "c"}, 2, 0, []),  # n = 0
    ],
)
def test_preference_list_node_down(
    up: set[str], partition: int, n: int, expected: list[str]
) -> None:
    assert ring.preference_list(TABLE, partition, up, n) == expected


@pytest.mark.parametrize(
    ("up", "expected"),
    [
        ({"a", "b", "c"}, OWNERS),
        ({"b", "c"}, ("b", "b", "c", "c", "b", "c", "b", "b")),  # a's 0, 2, 6 → b, c, b
        ({"a", "c"}, ("a", "a", "a", "c", "c", "c", "a", "a")),  # b's 1, 4, 7 → a, c, a
        ({"a", "b"}, ("a", "b", "a", "b", "b", "a", "a", "b")),  # c's 3, 5 → b, a
        ({"c"}, ("c",) * 8),  # a and b down: 6 and 7 wrap around to 3
    ],
)
def test_effective_owners_node_down(up: set[str], expected: tuple[str, ...]) -> None:
    assert ring.effective_owners(TABLE, up) == expected


def test_nobody_up_is_an_error_not_an_empty_ring() -> None:
    with pytest.raises(ValueError, match="no member of the ring is up"):
        ring.effective_owners(TABLE, {"z"})


def test_planned_table_is_pinned() -> None:
    # Two operator versions during an upgrade must compute the same table from
    # the same inputs; a change here is a change of the ring's wire behaviour.
    workers = [f"camstream-worker-{i}" for i in range(3)]
    w0, w1, w2 = workers
    assert ring.plan(None, workers, 8).owners == (w1, w2, w1, w0, w0, w0, w1, w2)


# -- StatefulSet life cycle on a planned ring --------------------------------

P = 256


def workers(n: int) -> list[str]:
    return [f"camstream-worker-{i}" for i in range(n)]


def shares(table: ring.RingTable, n: int) -> set[int]:
    """The distinct partition counts of workers 0..n-1 (0 for a worker owning none)."""
    counts = table.counts()
    return {counts.get(worker, 0) for worker in workers(n)}


def test_scale_up_one_pod_at_a_time_moves_work_only_to_the_new_pod() -> None:
    table = ring.plan(None, workers(3), P)
    for n in range(4, 9):
        new = ring.plan(table, workers(n), P)
        moves = ring.transfers(table, new)
        newcomer = f"camstream-worker-{n - 1}"
        assert {move.target for move in moves} == {newcomer}
        assert len(moves) == len(new.partitions_of(newcomer)) in (P // n, P // n + 1)
        assert shares(new, n) <= {P // n, -(-P // n)}
        table = new


def test_scale_down_highest_ordinal_first_moves_only_the_leavers_work() -> None:
    table = ring.plan(None, workers(8), P)
    for n in range(7, 2, -1):
        leaver = f"camstream-worker-{n}"
        new = ring.plan(table, workers(n), P)
        moves = ring.transfers(table, new)
        assert {move.source for move in moves} == {leaver}
        assert [move.partition for move in moves] == list(table.partitions_of(leaver))
        table = new


def test_rolling_update_hands_each_pods_share_off_and_back() -> None:
    # The StatefulSet controller restarts pods from the highest ordinal down;
    # with graceful leave each restart is a leave and a join of the same pod.
    table = ring.plan(None, workers(5), P)
    total = 0
    for ordinal in range(4, -1, -1):
        pod = f"camstream-worker-{ordinal}"
        others = [w for w in workers(5) if w != pod]
        left = ring.plan(table, others, P)
        back = ring.plan(left, workers(5), P)
        out, into = ring.transfers(table, left), ring.transfers(left, back)
        assert {m.source for m in out} == {pod} and {m.target for m in into} == {pod}
        assert len(out) == len(table.partitions_of(pod))
        assert len(into) in (P // 5, P // 5 + 1)
        assert shares(back, 5) <= {P // 5, P // 5 + 1}
        total += len(out) + len(into)
        table = back
    # Each pod's share moves twice (out and back in), never more.
    assert total <= 2 * 5 * (P // 5 + 1)


def test_crash_falls_back_without_replanning_and_returns_when_back() -> None:
    table = ring.plan(None, workers(10), P)
    crashed = "camstream-worker-3"
    up = set(workers(10)) - {crashed}
    serving = ring.effective_owners(table, up)
    moved = [p for p in range(P) if serving[p] != table.owners[p]]
    assert moved == list(table.partitions_of(crashed))  # only the crashed pod's work moves
    fallbacks = Counter(serving[p] for p in moved)
    # Scattered ownership spreads the hinted load: no neighbour takes it all.
    assert len(fallbacks) >= 4
    assert max(fallbacks.values()) <= len(moved) // 2
    # The pod comes back: the same table serves it its partitions again.
    assert ring.effective_owners(table, set(workers(10))) == table.owners


def test_two_crashes_never_serve_from_a_down_pod() -> None:
    table = ring.plan(None, workers(6), P)
    down = {"camstream-worker-1", "camstream-worker-2"}
    serving = ring.effective_owners(table, set(workers(6)) - down)
    assert not down & set(serving)
    for p in range(P):
        assert serving[p] == ring.preference_list(table, p, set(workers(6)) - down, 3)[0]


def test_operator_restart_changes_nothing() -> None:
    table = ring.plan(ring.plan(None, workers(4), P), workers(5), P)
    stored = ring.encode(table)
    # A fresh operator reads the ConfigMap and plans with the same pods.
    again = ring.plan(ring.decode(stored), list(reversed(workers(5))), P)
    assert again == table and again.version == table.version
    assert ring.encode(again) == stored


def test_resize_doubling_keeps_keys_and_moves_what_balance_needs() -> None:
    table = ring.plan(None, workers(3), P)  # 256 = 86 + 85 + 85
    bigger = ring.resize(table, 4 * P)  # 1024 = 342 + 341 + 341
    keys = [ring.stream_key("site", f"cam-{i}") for i in range(500)]
    stayed = sum(bigger.owner_of(k) == table.owner_of(k) for k in keys)
    moves = ring.transfers(table, bigger)
    # Remapped shares are 344, 340, 340: two partitions move, from the big one.
    assert len(moves) == 2 and len({m.source for m in moves}) == 1
    assert stayed >= len(keys) - 10
    assert sorted(bigger.counts().values()) == [341, 341, 342]


def test_resize_shrink_merges_and_rebalances() -> None:
    table = ring.plan(None, workers(3), P)
    smaller = ring.resize(table, P // 4)
    assert smaller.partitions == P // 4
    assert sorted(smaller.counts().values()) == [21, 21, 22]
    # Every key whose owner changed is covered by a transfer of its partition.
    keys = [ring.stream_key("site", f"cam-{i}") for i in range(500)]
    covered = {(m.partition, m.source, m.target) for m in ring.transfers(table, smaller)}
    for key in keys:
        before, after = table.owner_of(key), smaller.owner_of(key)
        if before != after:
            assert (ring.partition_of(key, P // 4), before, after) in covered
