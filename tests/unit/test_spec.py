"""CameraStream parsing: defaults as in the CRD, errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from camstream.spec import SecretRef, SpecError, parse_stream

CRD = Path(__file__).resolve().parents[2] / "crds" / "camerastream.yaml"


def body(**source: Any) -> dict[str, Any]:
    return {
        "apiVersion": "camstream.io/v1alpha1",
        "kind": "CameraStream",
        "metadata": {"name": "cam1", "namespace": "site-a", "generation": 3},
        "spec": {"source": source},
    }


def test_minimal_rtsp_stream_gets_the_crd_defaults() -> None:
    spec = parse_stream(body(protocol="rtsp", url="rtsp://10.0.0.5:554/stream1"))
    assert str(spec.key) == "site-a/cam1"
    assert spec.enabled is True
    assert spec.source.rtsp_transport == "tcp"
    assert spec.source.stall_timeout_seconds == 10
    assert (spec.hls.segment_seconds, spec.hls.window_segments) == (2, 6)
    assert spec.hls.segment_type == "mpegts"
    assert spec.generation == 3


def test_defaults_match_the_crd_schema() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    hls = schema["properties"]["spec"]["properties"]["hls"]["properties"]
    spec = parse_stream(body(protocol="synthetic"))
    assert spec.hls.segment_seconds == hls["segmentSeconds"]["default"]
    assert spec.hls.window_segments == hls["windowSegments"]["default"]
    assert spec.hls.segment_type == hls["segmentType"]["default"]
    synthetic = schema["properties"]["spec"]["properties"]["source"]["properties"]["synthetic"]
    assert spec.source.synthetic.width == synthetic["properties"]["width"]["default"]
    assert spec.source.synthetic.fps == synthetic["properties"]["fps"]["default"]


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"protocol": "webrtc"}, "spec.source.protocol"),
        ({"protocol": "rtsp"}, "spec.source.url"),
        ({"protocol": "rtsp", "url": "http://cam/x"}, "spec.source.url"),
        ({"protocol": "rtmp"}, "spec.source.streamKeySecretRef"),
        (
            {"protocol": "rtsp", "url": "rtsp://cam/x", "rtspTransport": "sctp"},
            "spec.source.rtspTransport",
        ),
        ({"protocol": "synthetic", "synthetic": {"fps": 0}}, "spec.source.synthetic.fps"),
        ({"protocol": "synthetic", "stallTimeoutSeconds": "10"}, "spec.source.stallTimeoutSeconds"),
    ],
)
def test_bad_sources_name_their_field(source: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_stream(body(**source))
    assert caught.value.field == field


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(SpecError) as caught:
        parse_stream(body(protocol="rtsp", url="rtsp://admin:hunter2@10.0.0.5/stream"))
    assert "hunter2" not in str(caught.value)
    assert "credentialsSecretRef" in str(caught.value)


def test_bad_hls_options_and_names() -> None:
    bad = body(protocol="synthetic")
    bad["spec"]["hls"] = {"segmentSeconds": 30}
    with pytest.raises(SpecError, match=r"spec\.hls\.segmentSeconds"):
        parse_stream(bad)
    bad = body(protocol="synthetic")
    bad["metadata"]["name"] = "Cam_1"
    with pytest.raises(SpecError, match=r"metadata\.name"):
        parse_stream(bad)


def test_transcode_enabled_without_renditions_gets_a_default_ladder() -> None:
    raw = body(protocol="synthetic")
    raw["spec"]["transcode"] = {"enabled": True}
    ladder = parse_stream(raw).transcode.renditions
    assert [r.height for r in ladder] == [720, 360]
    duplicate = copy.deepcopy(raw)
    duplicate["spec"]["transcode"]["renditions"] = [
        {"name": "a", "height": 720, "videoBitrateKbps": 2000},
        {"name": "a", "height": 360, "videoBitrateKbps": 800},
    ]
    with pytest.raises(SpecError, match="unique"):
        parse_stream(duplicate)


def test_secret_references_keep_their_keys() -> None:
    spec = parse_stream(
        body(
            protocol="rtsp",
            url="rtsps://cam/x",
            credentialsSecretRef={"name": "cam1-creds", "passwordKey": "pw"},
        )
    )
    assert spec.source.credentials is not None
    assert (spec.source.credentials.username.key, spec.source.credentials.password.key) == (
        "username",
        "pw",
    )


# -- srt


def _srt(source: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "cam", "namespace": "site"}, "spec": {"source": source}}


def test_srt_push_needs_a_passphrase_and_gets_the_crd_defaults() -> None:
    with pytest.raises(SpecError) as refused:
        parse_stream(_srt({"protocol": "srt"}))
    assert refused.value.field == "spec.source.srt.passphraseSecretRef"
    spec = parse_stream(_srt({"protocol": "srt", "srt": {"passphraseSecretRef": {"name": "k"}}}))
    assert spec.source.url is None
    assert spec.source.srt.passphrase == SecretRef("k", "passphrase")
    assert (spec.source.srt.latency_ms, spec.source.srt.key_length) == (120, 16)
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    srt = schema["properties"]["spec"]["properties"]["source"]["properties"]["srt"]["properties"]
    assert srt["latencyMs"]["default"] == 120 and srt["keyLength"]["default"] == 16
    assert srt["passphraseSecretRef"]["properties"]["key"]["default"] == "passphrase"


def test_srt_pull_takes_a_url_without_a_passphrase() -> None:
    spec = parse_stream(_srt({"protocol": "srt", "url": "srt://127.0.0.1:9000"}))
    assert spec.source.url == "srt://127.0.0.1:9000" and spec.source.srt.passphrase is None


@pytest.mark.parametrize(
    ("source", "field", "words"),
    [
        ({"protocol": "srt", "url": "srt://cam"}, "spec.source.url", "srt://host:port"),
        ({"protocol": "srt", "url": "rtsp://cam:1"}, "spec.source.url", "srt://"),
        (
            {"protocol": "srt", "url": "srt://cam:1?passphrase=hunter2hunter2"},
            "spec.source.url",
            "passphraseSecretRef",
        ),
        (
            {"protocol": "srt", "url": "srt://c:1", "srt": {"latencyMs": 5}},
            "spec.source.srt.latencyMs",
            "20 to 8000",
        ),
        (
            {"protocol": "srt", "url": "srt://c:1", "srt": {"keyLength": 20}},
            "spec.source.srt.keyLength",
            "16, 24, 32",
        ),
    ],
)
def test_bad_srt_sources_name_their_field(
    source: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as refused:
        parse_stream(_srt(source))
    assert refused.value.field == field and words in refused.value.message
    assert "hunter2" not in str(refused.value)
