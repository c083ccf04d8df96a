"""Membership from worker pods, heartbeat Leases and what was seen (operator/membership.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from camstream import ring
from camstream.wire import CONFIRMED_ANNOTATION, LEAVING_ANNOTATION
from camstream_operator import membership
from camstream_operator.membership import LeaseSightings

T0 = 1000.0  # monotonic seconds of this process


def pod(name: str, *, ready: bool = True, deleting: bool = False, ip: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T09:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "podIP": ip or f"127.0.10.{name[-1]}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def lease(holder: str, *, renew: str = "2026-12-03T09:00:00.000000Z", **annotations: str) -> Any:
    return {
        "metadata": {"name": f"{holder}-heartbeat", "annotations": annotations},
        "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": 6},
    }


def seen(*holders: str, at: float = T0) -> LeaseSightings:
    s = LeaseSightings()
    for h in holders:
        s.observe(h, "1", at)
    return s


def test_ready_and_recently_seen_workers_are_up() -> None:
    s = seen("w-0", "w-1", "w-2")
    s.observe("w-0", "2", T0 + 9)  # w-0 renewed; w-1 not since T0
    m = membership.from_resources(
        [pod("w-0"), pod("w-1"), pod("w-2", ready=False)],
        [lease("w-0"), lease("w-1"), lease("w-2")],
        sightings=s,
        now=T0 + 10,
    )
    assert m.existing == {"w-0", "w-1", "w-2"}
    assert m.up == {"w-0"}  # w-1 not seen renewed for 10 s > 6; w-2's kubelet says not Ready
    assert m.silent == {"w-1"}  # Ready, but its heartbeat went quiet
    assert m.addresses == {"w-0": "127.0.10.0", "w-1": "127.0.10.1"}


def test_the_lease_clock_is_never_read() -> None:
    """A worker whose clock is hours off is up as long as its Lease keeps changing."""
    for renew in ("2020-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z", None):
        m = membership.from_resources(
            [pod("w-0")],
            [lease("w-0", renew=renew)],  # type: ignore[arg-type]
            sightings=seen("w-0"),
            now=T0 + 5,
        )
        assert m.up == {"w-0"}


def test_a_pod_without_lease_is_silent_not_up() -> None:
    m = membership.from_resources([pod("w-0")], [], sightings=LeaseSightings(), now=T0)
    assert m.up == frozenset() and m.silent == {"w-0"} and m.existing == {"w-0"}


def test_first_sighting_and_resumed_sightings_get_a_full_duration() -> None:
    s = LeaseSightings()
    s.quiet_after = 6
    s.observe("w-0", "5", T0)
    s.observe("w-1", "9", T0)
    # Nobody changes for 60 s (an etcd outage looks like this from here) ...
    s.observe("w-0", "6", T0 + 60)  # ... then w-0 is heard again:
    # w-1 is judged from the resumption, not from T0: it has 6 s to be heard.
    assert s.seen_at("w-1") == T0 + 60
    m = membership.from_resources(
        [pod("w-0"), pod("w-1")], [lease("w-0"), lease("w-1")], sightings=s, now=T0 + 65
    )
    assert m.up == {"w-0", "w-1"}
    s.observe("w-0", "7", T0 + 64)
    m = membership.from_resources(
        [pod("w-0"), pod("w-1")], [lease("w-0"), lease("w-1")], sightings=s, now=T0 + 67
    )
    assert m.up == {"w-0"} and m.silent == {"w-1"}


def test_a_broken_watch_restarts_every_clock() -> None:
    s = seen("w-0")
    s.blind_until(T0 + 100)  # the Lease watch was re-listed at T0 + 100
    m = membership.from_resources([pod("w-0")], [lease("w-0")], sightings=s, now=T0 + 104)
    assert m.up == {"w-0"}


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_up_exactly_while_seen_within_the_duration(last: float, now_after: float) -> None:
    s = LeaseSightings()
    s.observe("w-0", "1", 0.0)
    s.observe("w-0", "2", last)
    m = membership.from_resources([pod("w-0")], [lease("w-0")], sightings=s, now=last + now_after)
    assert (m.up == {"w-0"}) == (now_after <= 6)
    assert (m.silent == {"w-0"}) == (now_after > 6)


def test_leaving_by_deletion_or_announcement_stays_up_while_heartbeating() -> None:
    m = membership.from_resources(
        [pod("w-0", deleting=True, ready=False), pod("w-1")],
        [lease("w-0"), lease("w-1", **{LEAVING_ANNOTATION: "true"})],
        sightings=seen("w-0", "w-1"),
        now=T0,
    )
    assert m.leaving == {"w-0", "w-1"}
    assert m.up == {"w-0", "w-1"}


def test_confirmations_are_read_from_the_lease() -> None:
    m = membership.from_resources(
        [pod("w-0")],
        [lease("w-0", **{CONFIRMED_ANNOTATION: "3.7,4.8"})],
        sightings=seen("w-0"),
        now=T0,
    )
    assert m.confirmed["w-0"] == {(3, 7), (4, 8)}


def test_restarting_workers_return_and_scaled_down_ones_do_not() -> None:
    """A rolling update (ordinal below replicas) comes back; a scale-down does not."""
    pods = [pod("w-0"), pod("w-1", deleting=True, ready=False), pod("w-3", deleting=True)]
    m = membership.from_resources(
        pods,
        [lease("w-0")],
        sightings=seen("w-0"),
        now=T0,
        replicas=3,
        known=("w-0", "w-1", "w-2", "w-3"),
    )
    # w-1 is being replaced, w-2 is gone but its ordinal is kept: both come back.
    # w-3 is past replicas: scaled down.
    assert m.returning == {"w-1", "w-2"}
    assert m.leaving == {"w-1", "w-3"}


def test_away_past_the_grace_no_longer_returns() -> None:
    args: dict[str, Any] = dict(sightings=LeaseSightings(), replicas=2, known=("w-1",))
    back = membership.from_resources([], [], now=T0 + 299, present_since={"w-1": T0}, **args)
    gone = membership.from_resources([], [], now=T0 + 301, present_since={"w-1": T0}, **args)
    assert back.returning == {"w-1"} and gone.returning == frozenset()


def test_table_members_keep_returning_and_silent_owners_and_drop_the_rest() -> None:
    table = ring.RingTable(4, 1, ("w-0", "w-1", "w-2", "w-3"))
    m = membership.Membership(
        existing=frozenset({"w-0", "w-1", "w-3", "w-4", "w-5"}),
        up=frozenset({"w-0", "w-3", "w-5"}),
        leaving=frozenset({"w-3"}),
        silent=frozenset({"w-1"}),
        returning=frozenset({"w-2", "w-4"}),
    )
    # w-1 silent: kept. w-2 restarting: kept. w-3 leaving for good: dropped.
    # w-4 returning but never an owner: not planned. w-5 new and up: joins.
    assert m.table_members(table) == {"w-0", "w-1", "w-2", "w-5"}


def test_finished_pods_do_not_exist() -> None:
    done = pod("w-0")
    done["status"]["phase"] = "Failed"
    m = membership.from_resources([done], [lease("w-0")], sightings=seen("w-0"), now=T0)
    assert m.existing == frozenset()


def test_ordinal() -> None:
    assert membership.ordinal("camstream-worker-12") == 12
    assert membership.ordinal("worker") is None


def test_late_is_up_but_past_half_the_duration() -> None:
    s = seen("w-0", "w-1", "w-2")
    s.observe("w-0", "2", T0 + 4)
    m = membership.from_resources(
        [pod("w-0"), pod("w-1"), pod("w-2")],
        [lease("w-0"), lease("w-1"), lease("w-2")],
        sightings=s,
        now=T0 + 5,  # w-0 seen 1 s ago; w-1 and w-2 5 s ago, past half of 6 s
    )
    assert m.up == {"w-0", "w-1", "w-2"} and m.late == {"w-1", "w-2"}
    assert m.quiet_for == {"w-0": 1.0, "w-1": 5.0, "w-2": 5.0}


def test_a_ready_flipped_by_the_node_lifecycle_controller_is_not_a_crash() -> None:
    """After an outage every pod's Ready is set False by the controller, not the kubelet.

    ContainersReady (the kubelet's own) still says True: the worker is judged
    by its heartbeat, not failed over. A kubelet that saw the process die sets both.
    """
    flipped = pod("w-0")
    flipped["status"]["conditions"] = [
        {"type": "Ready", "status": "False"},
        {"type": "ContainersReady", "status": "True"},
    ]
    dead = pod("w-1")
    dead["status"]["conditions"] = [
        {"type": "Ready", "status": "False"},
        {"type": "ContainersReady", "status": "False"},
    ]
    m = membership.from_resources(
        [flipped, dead], [lease("w-0"), lease("w-1")], sightings=seen("w-0", "w-1"), now=T0
    )
    assert m.up == {"w-0"} and m.silent == frozenset()
