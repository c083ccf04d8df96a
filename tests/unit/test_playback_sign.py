"""`camstream sign` (worker/camstream_worker/app/sign.py) and spec.playback (camstream/spec.py).

The command run through the real `camstream` entry point with a key file
and with standalone manifests; the URLs it prints verify with the key, for
what they say. The playback section of the CRD and spec.py checked to
accept the same Secret names and keys with the same message.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream import playback_tokens as tokens
from camstream.spec import (
    PLAYBACK_SECRET_KEY_MESSAGE,
    PLAYBACK_SECRET_NAME_MESSAGE,
    SpecError,
    parse_stream,
)
from camstream_cli.main import main
from camstream_worker.app import sign

KEY = "a-namespace-signing-key-of-40-characters"
CRD = Path(__file__).resolve().parents[2] / "crds" / "camerastream.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("30d", 2592000), ("45", 45)],
)
def test_durations(text: str, seconds: int) -> None:
    assert sign.duration(text) == seconds


@pytest.mark.parametrize("text", ["31d", "0s", "0", "1x", "-5m", "h", ""])
def test_durations_out_of_range_or_unreadable(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"duration|30 days"):
        sign.duration(text)


def manifests(tmp_path: Path, mode: str | None = "signed", key: str = KEY) -> Path:
    auth: dict[str, Any] = {} if mode is None else {"mode": mode}
    docs = [
        {"kind": "Secret", "metadata": {"name": "camstream-playback", "namespace": "site-a"},
         "stringData": {"signingKey": key}},
        {"kind": "CameraStream", "metadata": {"name": "door", "namespace": "site-a"},
         "spec": {"source": {"protocol": "synthetic"}, "playback": {"auth": auth}}},
    ]  # fmt: skip
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["sign", *argv])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_a_url_from_manifests_verifies_for_its_stream_until_it_expires(tmp_path, capsys) -> None:
    before = time.time()
    code, url, _ = run(
        capsys, "site-a/door", "-f", str(manifests(tmp_path)), "--for", "10m",
        "--base-url", "https://video.example.com/",
    )  # fmt: skip
    assert code == 0
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https", "video.example.com", "/streams/site-a/door/"
    )  # fmt: skip
    token = parse_qs(parts.query)["token"][0]
    grant = tokens.verify(KEY.encode(), token, namespace="site-a", name="door", now=time.time())
    assert int(before) + 600 <= grant.expires <= time.time() + 600
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(KEY.encode(), token, namespace="site-a", name="door", now=before + 601)


def test_key_file_playlist_namespace_wide_and_token_only(tmp_path, capsys) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    code, url, _ = run(capsys, "site-a/door", "--key-file", str(key_file), "--playlist")
    assert code == 0 and url.startswith("/streams/site-a/door/index.m3u8?token=v1.")
    code, token, _ = run(
        capsys, "site-a/door", "--key-file", str(key_file), "--namespace-wide", "--token-only"
    )
    assert code == 0
    grant = tokens.verify(KEY.encode(), token, namespace="site-a", name="gate", now=time.time())
    assert grant.name is None


def test_refusals_are_clear_and_hold_no_key(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "site-a/door", "-f", str(manifests(tmp_path, mode="none")))
    assert code == 2 and out == "" and "mode none, not signed" in err
    code, out, err = run(capsys, "site-a/gate", "-f", str(manifests(tmp_path)))
    assert code == 2 and "no CameraStream site-a/gate" in err
    code, out, err = run(capsys, "site-a/door", "-f", str(manifests(tmp_path, key="short-key")))
    assert code == 2 and "at least 32" in err and "short-key" not in err
    for bad in ("door", "site-a/../../kube-system/x", "Site-A/door"):
        code, out, err = run(capsys, bad, "-f", str(manifests(tmp_path)))
        assert code == 2 and "NAMESPACE/NAME" in err, bad
    # An unset mode follows the workers' default, which sign cannot see: allowed.
    code, url, _ = run(capsys, "site-a/door", "-f", str(manifests(tmp_path, mode=None)))
    assert code == 0 and "token=" in url


# -- spec.playback: the CRD and spec.py agree ------------------------------------------


def _field_rules() -> dict[str, tuple[str, str, int]]:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    auth = schema["properties"]["spec"]["properties"]["playback"]["properties"]["auth"]
    ref = auth["properties"]["signingKeySecretRef"]["properties"]
    rules = {}
    for field in ("name", "key"):
        rule = ref[field]["x-kubernetes-validations"][0]
        pattern = re.fullmatch(r"self\.matches\('(.*)'\)", rule["rule"])
        assert pattern, rule
        rules[field] = (pattern.group(1), rule["message"], ref[field]["maxLength"])
    return rules


def test_the_crd_says_what_spec_py_says() -> None:
    rules = _field_rules()
    assert rules["name"][1] == PLAYBACK_SECRET_NAME_MESSAGE
    assert rules["key"][1] == PLAYBACK_SECRET_KEY_MESSAGE
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    auth = schema["properties"]["spec"]["properties"]["playback"]["properties"]["auth"]
    assert auth["properties"]["mode"]["enum"] == ["none", "signed", "jwt"]
    defaults = parse_stream(
        {"metadata": {"name": "a"}, "spec": {"source": {"protocol": "synthetic"}}}
    ).playback.auth.signing_key
    ref = auth["properties"]["signingKeySecretRef"]["properties"]
    assert (defaults.name, defaults.key) == (ref["name"]["default"], ref["key"]["default"])


names = st.text(alphabet="abz09-._/A%", max_size=20) | st.from_regex(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]+)*", fullmatch=True
)


# No deadline: each example reads the CRD and compiles its rules, which takes
# ~25 ms alone and over 200 ms on the shared 2-core machine under load.
@settings(deadline=None)
@given(names, names)
def test_crd_and_spec_accept_the_same_secret_references(name: str, key: str) -> None:
    rules = _field_rules()

    def crd_accepts(field: str, value: str) -> bool:
        pattern, _, longest = rules[field]
        return len(value) <= longest and re.search(pattern, value) is not None

    body = {
        "metadata": {"name": "a"},
        "spec": {
            "source": {"protocol": "synthetic"},
            "playback": {"auth": {"signingKeySecretRef": {"name": name, "key": key}}},
        },
    }
    try:
        parse_stream(body)
        refused = None
    except SpecError as exc:
        refused = exc
    if not crd_accepts("name", name):
        assert refused is not None and refused.message == PLAYBACK_SECRET_NAME_MESSAGE
    elif not crd_accepts("key", key):
        assert refused is not None and refused.message == PLAYBACK_SECRET_KEY_MESSAGE
    else:
        assert refused is None
