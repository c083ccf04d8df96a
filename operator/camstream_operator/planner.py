"""One planning round of the ring: pure, no I/O.

Who calls this: the reconciler (reconcile.py), once per tick while this replica
leads. Same inputs, same output: an operator restart or a change of leader
re-derives exactly the document that is stored, so nothing moves.

Steps: the home table is planned over the table members (camstream.ring.plan,
balanced and minimal; a restarting worker stays a member, see
membership.py), the desired server of each partition is the ring's
effective owner among the workers that serve and stay (hinted handoff while
an owner is down or restarting), and the serving table follows it through
camstream.handoff.advance (make before break). The document's version is
bumped only when something changed.

Silent workers (pod Ready, heartbeat not seen renewed) are failed over the
way Kubernetes' node lifecycle controller evicts unreachable nodes
(`hold_silent`):

- only while most workers are heard. When more than half of them are silent
  or late (they missed a renewal) at once, the likelier story is that this
  operator cannot see (its network, an etcd or API server outage) rather
  than that half the fleet died; moving their partitions would only pile
  them onto the few that are heard. So they are *frozen*, as the node
  lifecycle controller stops evicting in a full disruption: they keep
  serving, and the round says why. Counting the late ones matters because a
  common cause silences workers one renewal period apart, not at once;
- at a capped rate otherwise: one more silent worker every
  `FAILOVER_INTERVAL` seconds (the node lifecycle controller evicts 0.1 nodes
  per second), so a cause that spreads slowly is seen for what it is before
  it has moved everything. A worker whose pod turned not Ready (its kubelet
  saw it die) is not silent and moves at once.

Handoff timeouts are judged by what this replica has seen too
(`HandoffSightings`): a handoff's `started` was written with whichever
replica's clock led then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from camstream import handoff, ring
from camstream.handoff import Event, Handoff, Policy, RingDoc

from .membership import Membership

DEFAULT_POLICY = Policy()
FAILOVER_INTERVAL = 10.0  # seconds between failing over one silent worker and the next


@dataclass(frozen=True, slots=True)
class Round:
    doc: RingDoc
    events: tuple[Event, ...]
    changed: bool
    warning: str = ""
    frozen: frozenset[str] = frozenset()  # silent workers not failed over this round


@dataclass(frozen=True, slots=True)
class Releases:
    """Silent workers already failed over, and when the last one was (monotonic seconds)."""

    workers: frozenset[str] = frozenset()
    last_at: float | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """What `hold_silent` decided for one round."""

    held: frozenset[str]  # silent workers treated as serving this round
    releases: Releases  # to pass to the next round
    common_cause: bool  # held because most workers are silent or late at once
    warning: str = ""


def frozen_workers(members: Membership) -> frozenset[str]:
    """All silent workers when most workers are silent or late at once; else none."""
    heard = members.up - members.leaving
    doubtful = members.silent | (members.late & heard)
    if members.silent and len(doubtful) * 2 > len(members.silent | heard):
        return members.silent
    return frozenset()


def hold_silent(
    members: Membership,
    releases: Releases,
    *,
    now: float,
    interval: float = FAILOVER_INTERVAL,
) -> Hold:
    """Which silent workers keep their partitions this round (`now`: monotonic seconds).

    Frozen ones all (a common cause); otherwise the ones released earlier stay
    released and one more may go once `interval` has passed since the last;
    the longest silent first.
    """
    silent = members.silent
    released = releases.workers & silent  # heard again or gone: forgotten
    frozen = frozen_workers(members)
    if frozen:
        warning = (
            f"{len(frozen)} of {len(frozen | members.up)} workers are silent at once: "
            "not failing them over (this operator may be the one cut off)"
        )
        return Hold(frozen, Releases(released, releases.last_at), True, warning)
    waiting = sorted(silent - released, key=lambda w: (-members.quiet_for.get(w, 0.0), w))
    last_at = releases.last_at
    if waiting and (last_at is None or now - last_at >= interval):
        released |= {waiting.pop(0)}
        last_at = now
    held = frozenset(waiting)
    warning = ""
    if held:
        warning = (
            f"{len(held)} more silent workers wait to be failed over "
            f"(one every {interval:.0f} s): {', '.join(sorted(held))}"
        )
    return Hold(held, Releases(released, last_at), False, warning)


class HandoffSightings:
    """How long this replica has seen each handoff in its current attempt or backoff.

    By its own monotonic clock, from the first round that saw it (a new leader
    gives every handoff in flight a full timeout); time this replica could not
    watch (`blind_until`) counts for nobody, as for heartbeat Leases.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int, str], float] = {}
        self._resumed_at = 0.0

    def blind_until(self, now: float) -> None:
        self._resumed_at = max(self._resumed_at, now)

    def ages(self, handoffs: Iterable[Handoff], now: float) -> Mapping[int, float]:
        current = {(h.id, h.attempt, h.state.value): h.id for h in handoffs}
        self._seen = {key: self._seen.get(key, now) for key in current}
        return {
            hid: max(0.0, now - max(self._seen[key], self._resumed_at))
            for key, hid in current.items()
        }


def plan_round(
    doc: RingDoc,
    members: Membership,
    *,
    now: float,
    policy: Policy = DEFAULT_POLICY,
    held: frozenset[str] | None = None,
    warning: str = "",
    ages: Mapping[int, float] | None = None,
) -> Round:
    """One round at wall time `now` (it only stamps new handoffs).

    `held`: the silent workers to keep serving (from `hold_silent`; None: the
    frozen rule alone). `ages`: see handoff.advance.
    """
    if held is None:
        hold = hold_silent(members, Releases(), now=0.0, interval=0.0)
        held = hold.held if hold.common_cause else frozenset()
        warning = warning or (hold.warning if hold.common_cause else "")
    frozen = held
    staying = (members.up - members.leaving) | frozen  # may be a partition's desired server
    serving = members.up | frozen  # may go on serving what it serves
    table = doc.table
    candidates = members.table_members(table)
    if candidates:
        table = ring.plan(table, sorted(candidates), doc.partitions)
    if table is not None and staying & frozenset(table.owners):
        desired: tuple[str | None, ...] = ring.effective_owners(table, staying)
    else:
        desired = (None,) * doc.partitions
        warning = warning or "no worker is up: streams keep their last owner"
    outcome = handoff.advance(
        serving=doc.serving,
        handoffs=doc.handoffs,
        desired=desired,
        up=serving,
        confirmed=members.confirmed,
        now=now,
        next_id=doc.next_id,
        policy=policy,
        ages=ages,
    )
    # Addresses of everyone who may serve, and of everyone who still does by the
    # table (a worker nobody could replace keeps its streams, and its address:
    # relays and playback forwarding find it by this table).
    owners = {w for w in outcome.serving if w}
    addresses = {w: ip for w, ip in members.addresses.items() if w in serving or w in owners}
    for w in owners - addresses.keys():
        if w in doc.addresses:
            addresses[w] = doc.addresses[w]
    new = replace(
        doc,
        table=table,
        serving=outcome.serving,
        handoffs=outcome.handoffs,
        next_id=outcome.next_id,
        addresses=addresses,
    )
    changed = new != doc
    if changed:
        new = replace(new, version=doc.version + 1)
    return Round(doc=new, events=outcome.events, changed=changed, warning=warning, frozen=frozen)
