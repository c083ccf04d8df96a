"""The admission webhook's decision (operator/handlers/handle_admission.py)."""

from __future__ import annotations

from camstream import partition_labels
from camstream_operator.handlers.handle_admission import labels_to_add


def test_webhook_labels_a_new_stream_only_when_it_can_tell() -> None:
    body = {"metadata": {"namespace": "site-a", "name": "door", "labels": {"team": "x"}}}
    assert labels_to_add(body, ring_size=1024) == partition_labels.labels_for(
        "site-a", "door", 1024
    )
    assert labels_to_add(body, ring_size=None) == {}  # ring unknown yet: the labeller will
    nameless = {"metadata": {"namespace": "site-a", "generateName": "cam-"}}
    assert labels_to_add(nameless, ring_size=1024) == {}
    labelled = {
        "metadata": {
            **body["metadata"],
            "labels": partition_labels.labels_for("site-a", "door", 1024),
        }
    }
    assert labels_to_add(labelled, ring_size=1024) == {}
