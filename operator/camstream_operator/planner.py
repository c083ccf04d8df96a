"""One planning round of the ring: pure, no I/O.

Who calls this: the reconciler (reconcile.py), once per tick while this replica
leads. Same inputs, same output: an operator restart or a change of leader
re-derives exactly the document that is stored, so nothing moves.

Steps: the home table is planned over the table members (camstream.ring.plan,
balanced and minimal), the desired server of each partition is the ring's
effective owner among the up workers (hinted handoff while an owner is down),
and the serving table follows it through camstream.handoff.advance (make
before break). The document's version is bumped only when something changed.
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


def plan_round(
    doc: RingDoc, members: Membership, *, now: float, policy: Policy = DEFAULT_POLICY
) -> Round:
    warning = ""
    table = doc.table
    candidates = members.table_members(table)
    if candidates:
        table = ring.plan(table, sorted(candidates), doc.partitions)
    up_owners = members.up & frozenset(table.owners) if table is not None else frozenset()
    if table is not None and up_owners:
        desired: tuple[str | None, ...] = ring.effective_owners(table, members.up)
    else:
        desired = (None,) * doc.partitions
        warning = "no worker is up: streams keep their last owner"
    outcome = handoff.advance(
        serving=doc.serving,
        handoffs=doc.handoffs,
        desired=desired,
        up=members.up,
        confirmed=members.confirmed,
        now=now,
        next_id=doc.next_id,
        policy=policy,
    )
    addresses = {w: ip for w, ip in members.addresses.items() if w in members.up}
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
    return Round(doc=new, events=outcome.events, changed=changed, warning=warning)
