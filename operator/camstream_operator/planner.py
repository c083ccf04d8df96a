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

Silent workers (pod Ready, heartbeat not seen renewed) are failed over only
while most workers are heard. When more than half of them go silent at once,
the likelier story is that this operator cannot see (its network, an etcd or
API server outage) rather than that half the fleet died; moving their
partitions would only pile them onto the few that are heard. So they are
frozen, as Kubernetes' node lifecycle controller stops evicting in a full
disruption: they keep serving their partitions, and the round says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from camstream import handoff, ring
from camstream.handoff import Event, Policy, RingDoc

from .membership import Membership

DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Round:
    doc: RingDoc
    events: tuple[Event, ...]
    changed: bool
    warning: str = ""
    frozen: frozenset[str] = frozenset()  # silent workers not failed over this round


def frozen_workers(members: Membership) -> frozenset[str]:
    """The silent workers to treat as serving: all of them when most workers are silent."""
    heard = members.up - members.leaving
    if members.silent and len(members.silent) * 2 > len(members.silent) + len(heard):
        return members.silent
    return frozenset()


def plan_round(
    doc: RingDoc, members: Membership, *, now: float, policy: Policy = DEFAULT_POLICY
) -> Round:
    warning = ""
    frozen = frozen_workers(members)
    if frozen:
        warning = (
            f"{len(frozen)} of {len(frozen | members.up)} workers are silent at once: "
            "not failing them over (this operator may be the one cut off)"
        )
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
    )
    addresses = {w: ip for w, ip in members.addresses.items() if w in serving}
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
