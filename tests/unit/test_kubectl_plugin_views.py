"""What `kubectl camstream` prints (camstream_cli/plugin_views.py), from hand-made objects."""

from __future__ import annotations

from typing import Any

from camstream import partition_labels, ring
from camstream.handoff import Handoff, RingDoc
from camstream_cli import plugin_views

P = 8


def pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def doc(serving: tuple[str, ...], handoffs: tuple[Handoff, ...] = ()) -> RingDoc:
    return RingDoc(P, 7, ring.RingTable(P, 3, serving), serving, handoffs, {"w-0": "10.0.0.5"})


def stream(name: str, *, labelled: bool = True, **status: Any) -> dict[str, Any]:
    labels = partition_labels.labels_for("site", name, P) if labelled else {}
    return {
        "metadata": {"namespace": "site", "name": name, "labels": labels, "generation": 2},
        "status": status,
    }


def test_ring_shows_shares_readiness_and_handoffs() -> None:
    h = Handoff(3, "w-0", "w-1", 11, started=100.0, attempt=2)
    lines = plugin_views.ring_view(
        doc(("w-0",) * 5 + ("w-1",) * 3, (h,)), [pod("w-0"), pod("w-1", ready=False)], now=130.0
    )
    text = "\n".join(lines)
    assert lines[0] == "ring v7: 8 partitions, 2 workers, 1 handoffs in flight"
    row0 = next(line for line in lines if line.startswith("w-0 "))
    assert row0.split()[:4] == ["w-0", "yes", "5", "5"] and "62.5%" in row0
    assert "10.0.0.5" in row0
    assert next(line for line in lines if line.startswith("w-1 ")).split()[1] == "no"
    assert "w-0" in text and "starting" in text and "30s" in text


def test_why_explains_phase_placement_conditions_and_events() -> None:
    d = doc(("w-0",) * P)
    s = stream(
        "gate",
        phase="Reconnecting",
        reason="SourceUnreachable",
        message="could not reach the source",
        observedGeneration=1,
        conditions=[{"type": "Degraded", "status": "True", "reason": "SourceUnreachable"}],
    )
    events = [
        {"lastTimestamp": "2026-12-03T10:00:00Z", "type": "Warning", "reason": "A", "message": "x"},
        {"lastTimestamp": "2026-12-03T10:01:00Z", "type": "Normal", "reason": "B", "count": 3},
    ]
    text = "\n".join(plugin_views.why_view(s, doc=d, pods=[pod("w-0")], events=events))
    assert text.startswith("site/gate: Reconnecting")
    assert "retries with backoff" in text and "SourceUnreachable" in text
    assert "has not applied the latest spec" in text
    assert f"partition {ring.partition_of('site/gate', P)} of {P}, served by w-0" in text
    assert "Degraded=True" in text and "B: (x3)" in text


def test_why_names_what_is_missing() -> None:
    d = doc(("w-0",) * P)
    unlabelled = plugin_views.why_view(stream("cam", labelled=False), doc=d, pods=[], events=[])
    assert "not labelled" in "\n".join(unlabelled)
    down = plugin_views.why_view(stream("cam"), doc=d, pods=[pod("w-0", ready=False)], events=[])
    assert "w-0 is not Ready" in "\n".join(down)
    no_ring = plugin_views.why_view(stream("cam"), doc=None, pods=[], events=[])
    assert "no ring yet" in "\n".join(no_ring)
    p = ring.partition_of("site/cam", P)
    moving = doc(("w-0",) * P, (Handoff(p, "w-0", "w-1", 4, 0.0),))
    assert "being handed from w-0 to w-1" in "\n".join(
        plugin_views.why_view(stream("cam"), doc=moving, pods=[pod("w-0")], events=[])
    )


def test_open_prefers_the_ingress_then_a_port_forward() -> None:
    via_ingress = plugin_views.open_view(
        "site", "gate", release_namespace="cams", ingress_host="video.example.com",
        ingress_tls=True, service="cams-playback",
    )  # fmt: skip
    assert via_ingress == [
        "https://video.example.com/streams/site/gate/",
        "https://video.example.com/streams/site/gate/index.m3u8",
    ]
    forward = plugin_views.open_view(
        "site", "gate", release_namespace="cams", ingress_host=None, ingress_tls=False,
        service="cams-playback",
    )  # fmt: skip
    assert forward[0] == "kubectl -n cams port-forward svc/cams-playback 8080:80"
    assert forward[1] == "http://127.0.0.1:8080/streams/site/gate/"
