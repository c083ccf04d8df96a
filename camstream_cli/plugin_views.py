"""What `kubectl camstream` prints, from plain Kubernetes objects: pure, no I/O.

Who calls this: kubectl_plugin.py, after it has read the objects; the unit
tests, with objects written by hand. Each view is a list of lines so the
caller decides where they go.

- `ring_view`: the partition table of one release: each worker's share (home
  and serving), who is up, the handoffs in flight.
- `why_view`: a stream's phase explained from its status and conditions, its
  partition labels, the ring (who serves its partition, whether that worker is
  up, a handoff in flight) and its recent Events.
- `open_view`: where to play a stream: the Ingress host if the release has
  one, else a port-forward to the playback Service.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from camstream import partition_labels, ring, wire
from camstream.handoff import RingDoc

# What each phase means to the person asking "why", and what to look at next.
PHASES = {
    "Pending": "accepted; its worker has not started it yet",
    "Connecting": "its worker is opening the camera (or waiting for a pushed camera to connect)",
    "Live": "segments are being written; it plays",
    "Reconnecting": "the camera was lost; the worker retries with backoff",
    "Failed": "an error a person must fix (a wrong password or key, an unsupported codec); "
    "retried slowly, so fixing the Secret heals it",
    "Invalid": "the spec is refused; fix the field named in the message",
    "Stopped": "paused (spec.enabled is false) or no longer run",
}


def _members_up(pods: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    up: dict[str, bool] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        up[str(meta.get("name"))] = ready and not meta.get("deletionTimestamp")
    return up


def ring_view(
    doc: RingDoc, pods: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> list[str]:
    """The partition table: shares per worker, readiness, handoffs in flight."""
    now = time.time() if now is None else now
    up = _members_up(pods)
    home = Counter(doc.table.owners) if doc.table is not None else Counter[str]()
    serving = Counter(o for o in doc.serving if o)
    unserved = sum(1 for o in doc.serving if not o)
    workers = sorted(set(home) | set(serving) | set(up))
    lines = [
        f"ring v{doc.version}: {doc.partitions} partitions, {len(workers)} workers, "
        f"{len(doc.handoffs)} handoffs in flight"
        + (f", {unserved} partitions served by nobody" if unserved else ""),
        "",
        f"{'WORKER':<32} {'READY':<6} {'HOME':>6} {'SERVING':>8} {'SHARE':>7}  ADDRESS",
    ]
    for worker in workers:
        share = serving[worker] / doc.partitions * 100 if doc.partitions else 0.0
        ready = "yes" if up.get(worker) else ("no" if worker in up else "gone")
        lines.append(
            f"{worker:<32} {ready:<6} {home[worker]:>6} {serving[worker]:>8} {share:>6.1f}%"
            f"  {doc.addresses.get(worker, '-')}"
        )
    if doc.handoffs:
        lines += ["", f"{'PARTITION':>9}  {'FROM':<28} {'TO':<28} {'STATE':<9} {'TRY':>3}  AGE"]
        for h in doc.handoffs:
            lines.append(
                f"{h.partition:>9}  {h.source:<28} {h.target:<28} {h.state.value:<9} "
                f"{h.attempt:>3}  {max(0.0, now - h.started):.0f}s"
            )
    return lines


def why_view(
    stream: Mapping[str, Any],
    *,
    doc: RingDoc | None,
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Why a stream is in its phase, in sentences, most telling first."""
    meta = stream.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    status = stream.get("status") or {}
    phase = status.get("phase")
    lines = [f"{namespace}/{name}: {phase or 'no status yet'}"]
    if phase in PHASES:
        lines.append(f"  {PHASES[phase]}.")
    if status.get("reason") or status.get("message"):
        reason, message = status.get("reason") or "-", status.get("message") or ""
        lines.append(f"  reason: {reason}: {message}".rstrip())
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        lines.append(
            f"  its worker has not applied the latest spec yet (generation {generation}, "
            f"status written for {observed})."
        )
    lines += _placement(namespace, name, meta.get("labels") or {}, status, doc, pods)
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("  conditions:")
        for c in sorted(conditions, key=lambda c: str(c.get("type"))):
            text = f"    {c.get('type')}={c.get('status')} {c.get('reason') or ''}"
            if c.get("message"):
                text += f": {c['message']}"
            lines.append(text.rstrip())
    recent = sorted(events, key=lambda e: str(e.get("lastTimestamp") or ""))[-5:]
    if recent:
        lines.append("  recent events:")
        for e in recent:
            count = f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""
            said = f"    {e.get('lastTimestamp') or '-'} {e.get('type')} {e.get('reason')}: "
            lines.append((said + (e.get("message") or "")).rstrip() + count)
    return lines


def _placement(
    namespace: str,
    name: str,
    labels: Mapping[str, str],
    status: Mapping[str, Any],
    doc: RingDoc | None,
    pods: Sequence[Mapping[str, Any]],
) -> list[str]:
    if doc is None:
        return ["  no ring yet: is the operator running (its Deployment, its leader Lease)?"]
    partition = ring.partition_of(ring.stream_key(namespace, name), doc.partitions)
    if partition_labels.partition_in(labels, doc.partitions) != partition:
        return [
            f"  not labelled for the ring of {doc.partitions} partitions yet "
            f"({partition_labels.label_key(doc.partitions)}): workers cannot see it. The "
            "operator labels what its admission webhook missed within seconds; if this "
            "stays, look at the operator's log and camstream_streams_unlabelled."
        ]
    owner = doc.serving[partition]
    up = _members_up(pods)
    lines = [f"  partition {partition} of {doc.partitions}, served by {owner or 'nobody'}"]
    if not owner:
        lines.append("  no worker serves this partition: are any workers Ready?")
    elif owner not in up:
        lines.append(f"  {owner} has no pod: its partitions move to a fallback shortly.")
    elif not up[owner]:
        lines.append(f"  {owner} is not Ready: its partitions fail over to a fallback.")
    moving = [h for h in doc.handoffs if h.partition == partition]
    for h in moving:
        lines.append(
            f"  being handed from {h.source} to {h.target} ({h.state.value}, attempt "
            f"{h.attempt}): the new owner starts it before the old one stops."
        )
    reported = status.get("worker")
    if reported and owner and reported != owner and not moving:
        lines.append(f"  status still names {reported}; {owner} writes it on its next change.")
    return lines


def open_view(
    namespace: str,
    name: str,
    *,
    release_namespace: str,
    ingress_host: str | None,
    ingress_tls: bool,
    service: str | None,
    service_port: int = 80,
) -> list[str]:
    """Where a stream plays: its player page and its playlist."""
    page = wire.stream_path(namespace, name)
    playlist = wire.playlist_path(namespace, name)
    if ingress_host:
        scheme = "https" if ingress_tls else "http"
        return [f"{scheme}://{ingress_host}{page}", f"{scheme}://{ingress_host}{playlist}"]
    if service:
        return [
            f"kubectl -n {release_namespace} port-forward svc/{service} 8080:{service_port}",
            f"http://127.0.0.1:8080{page}",
            f"http://127.0.0.1:8080{playlist}",
        ]
    return [f"no playback Service or Ingress found in {release_namespace}; path: {playlist}"]
