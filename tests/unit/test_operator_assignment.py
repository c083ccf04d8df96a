"""What the operator writes on a CameraStream (operator/assignment.py)."""

from __future__ import annotations

from typing import Any

from camstream import handoff, ring
from camstream.handoff import RingDoc
from camstream.wire import PARTITION_LABEL
from camstream_operator import assignment

P = 16
NOW = "2026-11-26T12:00:00Z"
LATER = "2026-11-26T13:00:00Z"


def body(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": "cam-1", "namespace": "site-a", "generation": 2, "labels": {}},
        "spec": spec or {"source": {"protocol": "synthetic"}},
        "status": status,
    }


def doc_served_by(worker: str) -> RingDoc:
    owners = (worker,) * P
    return RingDoc(P, 1, ring.RingTable(P, 1, owners), owners)


def apply(b: dict[str, Any], ch: assignment.StreamChanges) -> dict[str, Any]:
    if ch.labels:
        b["metadata"]["labels"].update(ch.labels)
    if ch.status:
        b["status"].update(ch.status)
    return b


def test_new_stream_gets_label_partition_worker_and_event() -> None:
    b = body()
    ch = assignment.assess(b, partitions=P, doc=doc_served_by("w-0"), now=NOW)
    p = ring.partition_of("site-a/cam-1", P)
    assert ch.labels == {PARTITION_LABEL: str(p)}
    assert ch.status is not None
    assert ch.status["partition"] == p and ch.status["worker"] == "w-0"
    assert ch.status["phase"] == "Pending" and ch.status["observedGeneration"] == 2
    assert ch.status["playbackPath"] == "/streams/site-a/cam-1/index.m3u8"
    types = {c["type"]: c["status"] for c in ch.status["conditions"]}
    assert types == {"Valid": "True", "Assigned": "True"}
    assert ch.notice is not None and ch.notice.reason == "Assigned"


def test_second_look_writes_nothing_even_later() -> None:
    b = apply(body(), assignment.assess(body(), partitions=P, doc=doc_served_by("w-0"), now=NOW))
    ch = assignment.assess(b, partitions=P, doc=doc_served_by("w-1"), now=LATER)
    assert ch == assignment.StreamChanges(labels=None, status=None, notice=None)


def test_worker_fields_are_left_to_the_worker() -> None:
    b = apply(body(), assignment.assess(body(), partitions=P, doc=doc_served_by("w-0"), now=NOW))
    b["status"].update(phase="Live", worker="w-3")
    b["status"]["conditions"].append({"type": "Live", "status": "True", "reason": "Segments"})
    ch = assignment.assess(b, partitions=P, doc=doc_served_by("w-0"), now=LATER)
    assert ch.status is None


def test_invalid_spec_is_marked_with_a_readable_condition() -> None:
    bad = body({"source": {"protocol": "rtsp", "url": "rtsp://user:secret@127.0.0.1/x"}})
    ch = assignment.assess(bad, partitions=P, doc=None, now=NOW)
    assert ch.status is not None and ch.status["phase"] == "Invalid"
    assert "spec.source.url" in ch.status["message"]
    assert "secret" not in repr(ch)  # the refused URL is never echoed
    valid = next(c for c in ch.status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False"
    assert ch.notice is not None and ch.notice.type == "Warning"
    # Fixed: back to Pending.
    fixed = apply(bad, ch)
    fixed["spec"] = {"source": {"protocol": "synthetic"}}
    ch2 = assignment.assess(fixed, partitions=P, doc=None, now=LATER)
    assert ch2.status is not None and ch2.status["phase"] == "Pending"


def test_disabled_stream_is_stopped() -> None:
    b = body({"enabled": False, "source": {"protocol": "synthetic"}})
    ch = assignment.assess(b, partitions=P, doc=None, now=NOW)
    assert ch.status is not None
    assert (ch.status["phase"], ch.status["reason"]) == ("Stopped", "Disabled")
    assert "worker" not in ch.status


def test_no_worker_yet() -> None:
    ch = assignment.assess(body(), partitions=P, doc=handoff.empty_doc(P), now=NOW)
    assert ch.status is not None and "worker" not in ch.status
    assert ch.notice is not None and "waiting for a worker" in ch.notice.message
