"""Operator metrics from ring rounds: gauges, handoff results and durations."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from camstream.handoff import Event, EventKind, Handoff, empty_doc
from camstream_operator.metrics import OperatorMetrics


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_round_sets_gauges_and_counts_finished_handoffs() -> None:
    leading = [True]
    metrics = OperatorMetrics(lambda: leading[0])
    doc = empty_doc(16)
    before = [Handoff(partition=3, source="w-0", target="w-1", id=1, started=100.0)]
    events = [
        Event(EventKind.HANDED_OFF, 3, "w-0", "w-1"),
        Event(EventKind.ROLLED_BACK, 4, "w-0", "w-2"),
        Event(EventKind.STARTED, 5, "w-0", "w-1"),  # not finished: not counted
    ]
    metrics.record_round(doc, members=3, events=events, before=before, now=104.5)
    got = samples(metrics)
    assert got[("camstream_ring_members", ())] == 3
    assert got[("camstream_ring_version", ())] == doc.version
    assert got[("camstream_handoffs_total", (("result", "ok"),))] == 1
    assert got[("camstream_handoffs_total", (("result", "rolled_back"),))] == 1
    assert got[("camstream_handoffs_total", (("result", "timeout"),))] == 0
    assert got[("camstream_handoff_duration_seconds_count", ())] == 1
    assert got[("camstream_handoff_duration_seconds_sum", ())] == 4.5
    assert got[("camstream_operator_leader", ())] == 1
    leading[0] = False
    assert samples(metrics)[("camstream_operator_leader", ())] == 0
