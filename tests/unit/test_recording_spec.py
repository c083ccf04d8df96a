"""spec.recording: parsed like the CRD validates it, with the same messages; site defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from camstream.spec import (
    SIZE_MESSAGE,
    RecordingDefaults,
    RecordingOptions,
    SpecError,
    parse_recording_defaults,
    parse_stream,
    with_recording_default,
)

CRD = Path(__file__).resolve().parents[2] / "crds" / "camerastream.yaml"
VERSION = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]
RECORDING = SCHEMA["properties"]["recording"]


def body(**spec: Any) -> dict[str, Any]:
    return {
        "kind": "CameraStream",
        "metadata": {"name": "cam1", "namespace": "site-a"},
        "spec": {"source": {"protocol": "synthetic"}, **spec},
    }


def test_absent_means_the_site_default_and_present_means_the_stream_decides() -> None:
    assert parse_stream(body()).recording is None
    spec = parse_stream(body(recording={"enabled": True}))
    assert spec.recording == RecordingOptions(enabled=True)
    # The defaults are the CRD's.
    retention = RECORDING["properties"]["retention"]["properties"]
    assert spec.recording.max_age_hours == retention["maxAgeHours"]["default"]
    assert spec.recording.group_seconds == RECORDING["properties"]["groupSeconds"]["default"]
    assert spec.recording.dvr_minutes == RECORDING["properties"]["dvrMinutes"]["default"]
    assert RECORDING["required"] == ["enabled"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [("1", 1), ("500Mi", 500 << 20), ("20Gi", 20 << 30), ("3Ti", 3 << 40), ("64Ki", 64 << 10)],
)
def test_max_size_in_bytes(size: str, expected: int) -> None:
    spec = parse_stream(body(recording={"enabled": True, "retention": {"maxSize": size}}))
    assert spec.recording is not None and spec.recording.max_bytes == expected


@pytest.mark.parametrize(
    ("recording", "field"),
    [
        ({}, "spec.recording.enabled"),
        ({"enabled": "yes"}, "spec.recording.enabled"),
        ({"enabled": True, "groupSeconds": 5}, "spec.recording.groupSeconds"),
        ({"enabled": True, "groupSeconds": 601}, "spec.recording.groupSeconds"),
        ({"enabled": True, "dvrMinutes": 121}, "spec.recording.dvrMinutes"),
        (
            {"enabled": True, "retention": {"maxAgeHours": 0}},
            "spec.recording.retention.maxAgeHours",
        ),
        ({"enabled": True, "retention": {"maxSize": "10GB"}}, "spec.recording.retention.maxSize"),
        ({"enabled": True, "retention": {"maxSize": "0"}}, "spec.recording.retention.maxSize"),
        ({"enabled": True, "retention": {"maxSize": 5}}, "spec.recording.retention.maxSize"),
    ],
)
def test_bad_recording_names_its_field(recording: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_stream(body(recording=recording))
    assert caught.value.field == field


def test_limits_and_the_size_rule_are_the_crds() -> None:
    props = RECORDING["properties"]
    assert (props["groupSeconds"]["minimum"], props["groupSeconds"]["maximum"]) == (10, 600)
    age = props["retention"]["properties"]["maxAgeHours"]
    assert (age["minimum"], age["maximum"]) == (1, 87600)
    rules = {r["message"]: r["rule"] for r in SCHEMA["x-kubernetes-validations"]}
    message = f"spec.recording.retention.maxSize: {SIZE_MESSAGE}"
    assert message in rules  # the API server says what spec.py says
    pattern = re.search(r"matches\('(.+)'\)", rules[message])
    assert pattern is not None
    for size, ok in [("500Mi", True), ("20Gi", True), ("0", False), ("1.5Gi", False)]:
        assert bool(re.fullmatch(pattern.group(1), size)) is ok


def test_printer_columns_show_recording_in_wide_output() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert columns["Recording"]["jsonPath"] == ".spec.recording.enabled"
    assert columns["Recording"]["priority"] == 1  # -o wide
    assert columns["Keep-Hours"]["jsonPath"] == ".spec.recording.retention.maxAgeHours"


def test_site_and_namespace_defaults_fill_in_only_streams_that_say_nothing() -> None:
    defaults = parse_recording_defaults(
        {
            "default": {"enabled": True, "retention": {"maxAgeHours": 72}},
            "namespaces": {"lobby": {"enabled": False}},
        },
        "CAMSTREAM_RECORDING_DEFAULTS",
    )
    silent = parse_stream(body())
    assert with_recording_default(silent, defaults).recording == RecordingOptions(
        enabled=True, max_age_hours=72
    )
    other = parse_stream({**body(), "metadata": {"name": "c", "namespace": "lobby"}})
    assert with_recording_default(other, defaults).recording == RecordingOptions(enabled=False)
    explicit = parse_stream(body(recording={"enabled": False}))
    assert with_recording_default(explicit, defaults).recording == RecordingOptions()
    assert with_recording_default(silent, RecordingDefaults()).recording == RecordingOptions()
    with pytest.raises(SpecError) as caught:
        parse_recording_defaults({"default": {"enabled": 1}}, "CAMSTREAM_RECORDING_DEFAULTS")
    assert caught.value.field == "CAMSTREAM_RECORDING_DEFAULTS.default.enabled"
