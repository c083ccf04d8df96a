"""Properties of the consistent-hash ring (camstream.ring), checked with hypothesis.

Balance, totality, determinism, minimal movement over random membership
histories, the ConfigMap codec, preference lists and resize. The minimal-
movement oracle here is independent of the implementation: it tries every
choice of which members get ⌈P/N⌉ partitions and keeps the cheapest.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camstream import ring

settings.register_profile(
    "ring",
    deadline=None,  # the machine is shared; wall-clock deadlines would flake
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
RING = settings.get_profile("ring")

POOL = tuple(f"camstream-worker-{i}" for i in range(8))
partitions_st = st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256])
members_st = st.frozensets(st.sampled_from(POOL), min_size=1)
history_st = st.lists(members_st, min_size=1, max_size=8)


def moved(old: ring.RingTable | None, new: ring.RingTable) -> int:
    """Partitions whose owner differs (all of them for a fresh ring)."""
    if old is None:
        return new.partitions
    return sum(a != b for a, b in zip(old.owners, new.owners, strict=True))


def min_moves(old: ring.RingTable | None, members: frozenset[str], partitions: int) -> int:
    """Brute-force oracle: fewest owner changes to reach any balanced table.

    A member ends with t = ⌊P/N⌋ or ⌈P/N⌉ and must receive max(0, t - kept),
    where kept is what it already owns; every changed partition is received by
    exactly one member. Try every set of members that gets the larger share.
    """
    if old is None:
        return partitions
    counts = old.counts()
    names = sorted(members)
    floor, extra = divmod(partitions, len(names))
    best = math.inf
    for bigger in itertools.combinations(names, extra):
        cost = sum(max(0, floor + (name in bigger) - counts.get(name, 0)) for name in names)
        best = min(best, cost)
    return int(best)


def assert_balanced(table: ring.RingTable, members: frozenset[str]) -> None:
    counts = table.counts()
    assert set(counts) <= members, "an owner that is not a member"
    floor, extra = divmod(table.partitions, len(members))
    shares = sorted((counts.get(name, 0) for name in members), reverse=True)
    assert shares == [floor + 1] * extra + [floor] * (len(members) - extra)
    assert len(table.owners) == table.partitions and all(table.owners)


# -- partition function -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "partition"),
    [("default/cam-1", 1429), ("site-a/lobby", 3929), ("", 692), ("ns/ünïcode", 3077)],
)
def test_partition_of_is_pinned(key: str, partition: int) -> None:
    # Golden values (BLAKE2b-64, big-endian, mod 4096). If these change, every
    # stream of every cluster changes partition: a deliberate, migrated event.
    assert ring.partition_of(key, 4096) == partition
    assert ring.partition_of(key, 1) == 0


@pytest.mark.parametrize("bad", [0, -4, 3, 12, 1000, True, 2.0])
def test_partition_count_must_be_power_of_two(bad: object) -> None:
    with pytest.raises(ValueError, match="power of two"):
        ring.partition_of("ns/name", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power of two"):
        ring.plan(None, ["a"], bad)  # type: ignore[arg-type]


@RING
@given(key=st.text(), exp=st.integers(0, 20))
def test_partition_in_range_and_splits_on_doubling(key: str, exp: int) -> None:
    size = 1 << exp
    p = ring.partition_of(key, size)
    assert 0 <= p < size
    # Doubling P splits partition p into p and p + P: what resize relies on.
    assert ring.partition_of(key, 2 * size) in (p, p + size)


def test_partition_spreads_keys_evenly() -> None:
    counts = [0] * 64
    for i in range(64 * 200):
        counts[ring.partition_of(ring.stream_key("site-a", f"cam-{i}"), 64)] += 1
    # 200 expected per partition; a sound 64-bit hash stays well within ±50%.
    assert min(counts) > 100 and max(counts) < 300


# -- plan: totality, balance, determinism, version ----------------------------


@RING
@given(partitions=partitions_st, history=history_st)
def test_every_plan_is_total_and_balanced(partitions: int, history: list[frozenset[str]]) -> None:
    table = None
    for members in history:
        table = ring.plan(table, sorted(members), partitions)
        assert_balanced(table, members)


@RING
@given(partitions=partitions_st, history=history_st, seed=st.integers(0, 2**32))
def test_plan_ignores_member_order_and_duplicates(
    partitions: int, history: list[frozenset[str]], seed: int
) -> None:
    shuffler = random.Random(seed)
    left = right = None
    for members in history:
        shuffled = list(members) + shuffler.sample(sorted(members), k=1)
        shuffler.shuffle(shuffled)
        left = ring.plan(left, sorted(members), partitions)
        right = ring.plan(right, shuffled, partitions)
        assert left == right


@RING
@given(partitions=partitions_st, history=history_st)
def test_version_moves_only_with_owners(partitions: int, history: list[frozenset[str]]) -> None:
    table = None
    for members in history:
        new = ring.plan(table, sorted(members), partitions)
        if table is None:
            assert new.version == 1
        elif new.owners == table.owners:
            assert new is table
        else:
            assert new.version == table.version + 1
        # Planning again with the same members is a no-op.
        assert ring.plan(new, sorted(members), partitions) is new
        table = new


def test_empty_membership_is_refused() -> None:
    with pytest.raises(ValueError, match="no members"):
        ring.plan(None, [], 8)
    table = ring.plan(None, ["a", "b"], 8)
    with pytest.raises(ValueError, match="no members"):
        ring.plan(table, [], 8)


@pytest.mark.parametrize("bad", [[""], [None], ["ok", 7], ["tab\there"]])
def test_bad_member_names_are_refused(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        ring.plan(None, bad, 8)  # type: ignore[arg-type]


def test_a_bare_string_is_not_a_member_list() -> None:
    with pytest.raises(TypeError):
        ring.plan(None, "camstream-worker-0", 8)


def test_more_members_than_partitions_is_still_balanced() -> None:
    members = frozenset(POOL)
    table = ring.plan(None, sorted(members), 4)
    assert_balanced(table, members)
    assert len(set(table.owners)) == 4


# -- plan: minimal movement ---------------------------------------------------


@RING
@given(partitions=partitions_st, history=history_st)
def test_moves_are_minimal_over_random_histories(
    partitions: int, history: list[frozenset[str]]
) -> None:
    table = None
    for members in history:
        new = ring.plan(table, sorted(members), partitions)
        # No slack: the plan matches the brute-force optimum exactly.
        assert moved(table, new) == min_moves(table, members, partitions)
        table = new


@RING
@given(
    owners=st.lists(st.sampled_from((*POOL, "gone-1", "gone-2")), min_size=64, max_size=64),
    members=members_st,
)
def test_plan_from_any_table_is_balanced_and_minimal(
    owners: list[str], members: frozenset[str]
) -> None:
    # Tables not made by plan (hand-edited, or from an older algorithm): plan
    # still reaches balance with the fewest moves, and orphans always move.
    table = ring.RingTable(64, 7, tuple(owners))
    new = ring.plan(table, sorted(members), 64)
    assert_balanced(new, members)
    assert moved(table, new) == min_moves(table, members, 64)


@RING
@given(exp=st.integers(4, 10), n=st.integers(1, 40), data=st.data())
def test_join_and_leave_move_only_what_balance_requires(
    exp: int, n: int, data: st.DataObject
) -> None:
    partitions = 1 << exp
    members = [f"camstream-worker-{i}" for i in range(n)]
    table = ring.plan(None, members, partitions)
    joiner = "camstream-worker-new"
    joined = ring.plan(table, [*members, joiner], partitions)
    moves = ring.transfers(table, joined)
    # A join moves ⌊P/(N+1)⌋ or ⌈P/(N+1)⌉ partitions, all to the newcomer.
    assert len(moves) in (partitions // (n + 1), -(-partitions // (n + 1)))
    assert {move.target for move in moves} <= {joiner}
    leaver = data.draw(st.sampled_from(members))
    if n > 1:
        left = ring.plan(table, [m for m in members if m != leaver], partitions)
        moves = ring.transfers(table, left)
        # A leave moves exactly the leaver's partitions and nothing else.
        assert sorted(move.partition for move in moves) == list(table.partitions_of(leaver))
        assert {move.source for move in moves} <= {leaver}


@RING
@given(partitions=partitions_st, history=history_st)
def test_transfers_turn_old_into_new(partitions: int, history: list[frozenset[str]]) -> None:
    table = ring.plan(None, sorted(history[0]), partitions)
    for members in history[1:]:
        new = ring.plan(table, sorted(members), partitions)
        owners = list(table.owners)
        for move in ring.transfers(table, new):
            assert owners[move.partition] == move.source != move.target
            owners[move.partition] = move.target
        assert tuple(owners) == new.owners
        table = new


# -- codec ---------------------------------------------------------------------


@RING
@given(partitions=partitions_st, history=history_st, version=st.integers(0, 2**40))
def test_encode_decode_round_trip(
    partitions: int, history: list[frozenset[str]], version: int
) -> None:
    table = None
    for members in history:
        table = ring.plan(table, sorted(members), partitions)
        assert ring.decode(ring.encode(table)) == table
    assert table is not None
    odd = ring.RingTable(partitions, version, table.owners)
    assert ring.decode(ring.encode(odd)) == odd


def test_encoded_size_of_a_large_ring_is_small() -> None:
    members = [f"camstream-worker-{i}" for i in range(1000)]
    text = ring.encode(ring.plan(None, members, 16384))
    assert len(text.encode()) < 100 * 1024  # a ConfigMap allows 1 MiB


def _document(table: ring.RingTable) -> dict[str, object]:
    return json.loads(ring.encode(table))


def _corruptions() -> list[tuple[str, str]]:
    table = ring.plan(None, ["a", "b", "c"], 8)
    base = _document(table)

    def edit(**changes: object) -> str:
        return json.dumps({**base, **changes})

    short = base64.b64encode(b"\x00\x01" * 7).decode()
    out_of_range = base64.b64encode(b"\x00\x03" * 8).decode()
    return [
        ("", "not JSON"),
        ("[1, 2]", "JSON object"),
        (edit(format="camstream-ring/0"), "unknown format"),
        (edit(partitions=6), "power of two"),
        (edit(partitions=True), "partitions"),
        (edit(version=-1), "version"),
        (edit(version="7"), "version"),
        (edit(members=[]), "members"),
        (edit(members=["a", "a", "b"]), "duplicate"),
        (edit(members=["a", "", "c"]), "non-empty"),
        (edit(owners="@@@@"), "base64"),
        (edit(owners=short), "expected 16"),
        (edit(owners=out_of_range), "only 3"),
        (edit(members=["a", "b\nc", "d"]), "printable"),
    ]


@pytest.mark.parametrize(("text", "message"), _corruptions())
def test_decode_rejects_bad_tables_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ring.decode(text)


@RING
@given(data=st.data())
def test_decode_of_damaged_text_raises_value_error_only(data: st.DataObject) -> None:
    text = ring.encode(ring.plan(None, ["a", "b", "c"], 16))
    cut = data.draw(st.integers(0, len(text) - 1))
    junk = data.draw(st.text(max_size=3))
    damaged = text[:cut] + junk + text[cut + 1 :]
    try:
        table = ring.decode(damaged)
    except ValueError:
        return
    # A change that still decodes yields a whole table, never a partial one.
    assert len(table.owners) == table.partitions


# -- preference lists and effective owners --------------------------------------


@RING
@given(
    partitions=partitions_st,
    members=members_st,
    up=st.frozensets(st.sampled_from((*POOL, "camstream-worker-unplanned"))),
    n=st.integers(0, 10),
    data=st.data(),
)
def test_preference_lists(
    partitions: int, members: frozenset[str], up: frozenset[str], n: int, data: st.DataObject
) -> None:
    table = ring.plan(None, sorted(members), partitions)
    partition = data.draw(st.integers(0, partitions - 1))
    prefs = ring.preference_list(table, partition, up, n)
    up_owners = up & set(table.owners)
    assert set(prefs) <= up_owners, "a down member or a non-owner in the list"
    assert len(prefs) == len(set(prefs)) == min(n, len(up_owners))
    if n and table.owners[partition] in up:
        assert prefs[0] == table.owners[partition]
    # Order does not matter for the up set, nor does its container type.
    assert ring.preference_list(table, partition, sorted(up), n) == prefs


@RING
@given(partitions=partitions_st, members=members_st, up=st.frozensets(st.sampled_from(POOL)))
def test_effective_owners_are_up_and_first_in_preference(
    partitions: int, members: frozenset[str], up: frozenset[str]
) -> None:
    table = ring.plan(None, sorted(members), partitions)
    if not up & set(table.owners):
        with pytest.raises(ValueError, match="no member"):
            ring.effective_owners(table, up)
        return
    serving = ring.effective_owners(table, up)
    for partition, member in enumerate(serving):
        assert member in up
        assert [member] == ring.preference_list(table, partition, up, 1)
        if table.owners[partition] in up:
            assert member == table.owners[partition]


# -- resize --------------------------------------------------------------------


@RING
@given(
    partitions=partitions_st,
    history=history_st,
    grow=st.integers(0, 3),
    keys=st.lists(st.text(), max_size=30),
)
def test_remap_keeps_every_key_on_its_owner_when_growing(
    partitions: int, history: list[frozenset[str]], grow: int, keys: list[str]
) -> None:
    table = None
    for members in history:
        table = ring.plan(table, sorted(members), partitions)
    assert table is not None
    bigger = ring.remap(table, partitions << grow)
    for key in keys:
        assert bigger.owner_of(key) == table.owner_of(key)


@RING
@given(
    exp=st.integers(0, 8),
    n_exp=st.integers(0, 3),
    grow=st.integers(1, 3),
    keys=st.lists(st.text(), max_size=50),
)
def test_resize_moves_no_key_when_balance_needs_nothing(
    exp: int, n_exp: int, grow: int, keys: list[str]
) -> None:
    n = 1 << min(n_exp, exp)  # N divides P: the doubled table is balanced as it is
    partitions = 1 << exp
    table = ring.plan(None, [f"camstream-worker-{i}" for i in range(n)], partitions)
    resized = ring.resize(table, partitions << grow)
    assert ring.transfers(table, resized) == ()
    assert resized.version == table.version + 1
    for key in keys:
        assert resized.owner_of(key) == table.owner_of(key)


@RING
@given(partitions=partitions_st, members=members_st, target_exp=st.integers(0, 9))
def test_resize_is_balanced_and_minimal_from_the_remapped_table(
    partitions: int, members: frozenset[str], target_exp: int
) -> None:
    table = ring.plan(None, sorted(members), partitions)
    target = 1 << target_exp
    # Members are explicit: with N > P some own nothing and the table alone
    # cannot name them.
    resized = ring.resize(table, target, members=sorted(members))
    assert resized.partitions == target
    assert_balanced(resized, members)
    remapped = ring.remap(table, target)
    assert moved(remapped, resized) == min_moves(remapped, members, target)
    if target >= partitions:
        # Growing: the keys that change owner are exactly the transfers.
        assert len(ring.transfers(table, resized)) == moved(remapped, resized)


def test_resize_to_the_same_size_is_a_no_op() -> None:
    table = ring.plan(None, ["a", "b", "c"], 64)
    assert ring.resize(table, 64) is table


def test_transfers_after_a_shrink_cover_every_moved_key() -> None:
    table = ring.RingTable(4, 3, ("a", "b", "a", "c"))
    small = ring.RingTable(2, 4, ("a", "b"))
    # Partition 0 gets old 0 and 2 (both a); partition 1 gets old 1 (b) and 3 (c).
    assert ring.transfers(table, small) == (ring.Transfer(1, "c", "b"),)


# -- table and surface ---------------------------------------------------------


def test_table_validates_itself() -> None:
    with pytest.raises(ValueError, match="owners for"):
        ring.RingTable(4, 1, ("a", "b"))
    with pytest.raises(ValueError, match="power of two"):
        ring.RingTable(3, 1, ("a", "b", "c"))
    with pytest.raises(ValueError, match="version"):
        ring.RingTable(2, -1, ("a", "b"))
    with pytest.raises(ValueError, match="non-empty"):
        ring.RingTable(2, 1, ("a", ""))
    table = ring.RingTable(2, 1, ["a", "b"])  # type: ignore[arg-type]
    assert table.owners == ("a", "b") and hash(table)
    with pytest.raises(IndexError):
        table.owner(2)


def test_public_names_are_pinned() -> None:
    assert sorted(ring.__all__) == [
        "FORMAT",
        "RingTable",
        "Transfer",
        "check_partitions",
        "decode",
        "effective_owners",
        "encode",
        "is_power_of_two",
        "key_hash",
        "normalize_members",
        "partition_of",
        "plan",
        "preference_list",
        "remap",
        "resize",
        "stream_key",
        "transfers",
    ]
