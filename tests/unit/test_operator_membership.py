"""Membership from worker pods and heartbeat Leases (operator/membership.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from camstream import ring
from camstream.wire import CONFIRMED_ANNOTATION, LEAVING_ANNOTATION
from camstream_operator import membership

NOW = 1_800_000_000.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod(name: str, *, ready: bool = True, deleting: bool = False, ip: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = stamp(NOW - 1)
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "podIP": ip or f"127.0.10.{name[-1]}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def lease(holder: str, age: float = 1.0, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{holder}-heartbeat", "annotations": annotations},
        "spec": {
            "holderIdentity": holder,
            "renewTime": stamp(NOW - age),
            "leaseDurationSeconds": 6,
        },
    }


def test_ready_and_heartbeating_workers_are_up() -> None:
    m = membership.from_resources(
        [pod("w-0"), pod("w-1"), pod("w-2", ready=False)],
        [lease("w-0"), lease("w-1", age=10), lease("w-2")],
        now=NOW,
    )
    assert m.existing == {"w-0", "w-1", "w-2"}
    assert m.up == {"w-0"}  # w-1's heartbeat is stale, w-2 is not Ready
    assert m.addresses == {"w-0": "127.0.10.0"}


def test_a_pod_without_lease_is_not_up() -> None:
    m = membership.from_resources([pod("w-0")], [], now=NOW)
    assert m.up == frozenset() and m.existing == {"w-0"}


def test_leaving_by_deletion_or_announcement_stays_up_while_heartbeating() -> None:
    m = membership.from_resources(
        [pod("w-0", deleting=True, ready=False), pod("w-1")],
        [lease("w-0"), lease("w-1", **{LEAVING_ANNOTATION: "true"})],
        now=NOW,
    )
    assert m.leaving == {"w-0", "w-1"}
    assert m.up == {"w-0", "w-1"}


def test_confirmations_are_read_from_the_lease() -> None:
    m = membership.from_resources(
        [pod("w-0")], [lease("w-0", **{CONFIRMED_ANNOTATION: "3.7,4.8"})], now=NOW
    )
    assert m.confirmed["w-0"] == {(3, 7), (4, 8)}


def test_table_members_keep_crashed_owners_and_drop_gone_and_leaving() -> None:
    table = ring.RingTable(4, 1, ("w-0", "w-1", "w-2", "w-3"))
    m = membership.Membership(
        existing=frozenset({"w-0", "w-1", "w-3", "w-4", "w-5"}),
        up=frozenset({"w-0", "w-3", "w-5"}),
        leaving=frozenset({"w-3"}),
    )
    # w-1 crashed (exists, down): kept. w-2 gone: dropped. w-3 leaving: dropped.
    # w-4 never came up: not planned. w-5 new and up: joins.
    assert m.table_members(table) == {"w-0", "w-1", "w-5"}


def test_finished_pods_do_not_exist() -> None:
    done = pod("w-0")
    done["status"]["phase"] = "Failed"
    m = membership.from_resources([done], [lease("w-0")], now=NOW)
    assert m.existing == frozenset()
