"""The checks the CRD makes with CEL and spec.py makes in Python agree, input for input.

A stream refused at admission (a cluster) and one refused by spec.py
(standalone mode, or stored before a rule existed) must read alike: the same
pattern and the same message on both paths. Here the CRD's rules are read
from crds/camerastream.yaml and held against spec.py's on many generated
inputs (hypothesis); the rules' RE2 regexes use only syntax on which Python's
`re` agrees (character classes, groups, `?`/`*`, anchors, `(?i:...)`).
tests/cluster/test_chart_dryrun.py sends a sample to a real kube-apiserver.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream import spec_rules as spec
from camstream.spec import SpecError, parse_stream

CRD = Path(__file__).resolve().parents[2] / "crds" / "camerastream.yaml"
_SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SOURCE = _SCHEMA["properties"]["spec"]["properties"]["source"]
REFS = {
    "credentialsSecretRef": ("name", "usernameKey", "passwordKey"),
    "streamKeySecretRef": ("name", "key"),
}


def _rule(schema: dict[str, Any]) -> tuple[str, str]:
    (only,) = schema["x-kubernetes-validations"]
    return only["rule"], only["message"]


def _crd_string_check(schema: dict[str, Any]) -> Any:
    """The CRD's check of one string field, evaluated in Python: message or None."""
    rule, message = _rule(schema)
    found = re.fullmatch(r"size\(self\) <= (\d+) && self\.matches\(r'(.*)'\)", rule)
    assert found, f"rule changed shape, update this test: {rule}"
    limit, pattern = int(found.group(1)), found.group(2)
    # CEL's matches() is RE2, where `$` is the end of the text; Python's `$`
    # also matches before a final newline ("0\n" passed here, not there).
    if pattern.endswith("$"):
        pattern = pattern[:-1] + r"\Z"

    def check(value: str) -> str | None:
        if len(value) > schema["maxLength"]:
            return "Too long"  # the API server's own message, before any rule
        return None if len(value) <= limit and re.search(pattern, value) else message

    return check


# Names and keys from the characters that matter: the allowed ones, the
# separators of paths and URLs, case, and a little of everything else.
_TEXT = st.text(
    alphabet=st.sampled_from("abz09-._/%A?#: \n\u00e9") | st.characters(),
    max_size=20,
) | st.from_regex(spec.SECRET_NAME_PATTERN, fullmatch=True)
_LONG = st.integers(250, 260).map(lambda n: "a" * n)


@pytest.mark.parametrize(("ref", "field"), [(r, f) for r, fs in REFS.items() for f in fs])
@settings(max_examples=120, deadline=None)
@given(value=_TEXT | _LONG)
def test_secret_ref_fields_are_checked_alike(ref: str, field: str, value: str) -> None:
    crd_check = _crd_string_check(SOURCE["properties"][ref]["properties"][field])
    source: dict[str, Any] = {"protocol": "rtmp", "streamKeySecretRef": {"name": "k"}}
    if ref == "credentialsSecretRef":
        source = {"protocol": "rtsp", "url": "rtsps://cam/x"}
    source[ref] = {**source.get(ref, {"name": "k"}), field: value}
    crd_message = crd_check(value)
    try:
        parse_stream({"metadata": {"name": "cam"}, "spec": {"source": source}})
        python_message = None
    except SpecError as err:
        assert err.field == f"spec.source.{ref}.{field}"
        python_message = err.message
    if crd_message == "Too long":
        assert python_message is not None  # refused on both paths; the API server words it
    else:
        assert python_message == crd_message, value


@pytest.mark.parametrize(
    "attack",
    [
        "../../kube-system/secrets/x",
        "..",
        "kube-system/x",
        "x%2F..%2Fy",
        "X",
        "",
        "a" * 254,
    ],
)
def test_reported_attacks_are_refused_with_the_crd_message(attack: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_stream(
            {
                "metadata": {"name": "cam"},
                "spec": {"source": {"protocol": "rtmp", "streamKeySecretRef": {"name": attack}}},
            }
        )
    assert (
        caught.value.message
        == _rule(SOURCE["properties"]["streamKeySecretRef"]["properties"]["name"])[1]
    )
    assert caught.value.message == spec.SECRET_NAME_MESSAGE


_URLS = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(
        [
            "rtsp://",
            "rtsps://",
            "RTSPS://",
            "http://",
            "https://",
            "HtTpS://",
            " https://",
            "https:/",
        ]
    ),
    st.sampled_from(["cam/x", "cam:554/x", "[::1]/x"]),
)


@settings(max_examples=120, deadline=None)
@given(
    protocol=st.sampled_from(["rtsp", "http"]),
    url=_URLS,
    credentials=st.booleans(),
    allow=st.none() | st.booleans(),
)
def test_credentials_without_tls_are_refused_alike(
    protocol: str, url: str, credentials: bool, allow: bool | None
) -> None:
    rule, message = _rule(SOURCE)
    # The rule, read in Python (the test pins its text, so a change to it shows here).
    assert rule == (
        "!(self.protocol in ['rtsp', 'http']) || !has(self.credentialsSecretRef) || "
        "(has(self.allowInsecureCredentials) && self.allowInsecureCredentials) || "
        f"(has(self.url) && self.url.matches(r'{spec.TLS_URL_PATTERN}'))"
    )
    crd_refuses = credentials and not allow and not re.search(spec.TLS_URL_PATTERN, url)
    source: dict[str, Any] = {"protocol": protocol, "url": url}
    if credentials:
        source["credentialsSecretRef"] = {"name": "cam-creds"}
    if allow is not None:
        source["allowInsecureCredentials"] = allow
    try:
        parse_stream({"metadata": {"name": "cam"}, "spec": {"source": source}})
        refused = None
    except SpecError as err:
        refused = err
    if crd_refuses:
        assert refused is not None
        # Either this rule or the url's own shape check (a url the CRD takes as a string).
        assert (refused.field, refused.message) in {
            ("spec.source", message),
            ("spec.source.url", refused.message),
        }
        if re.match(r"^(rtsp|http)s?://", url, re.IGNORECASE) and url[0] != " ":
            scheme_fits = url.lower().split("://")[0].rstrip("s") == protocol
            if scheme_fits:
                assert (refused.field, refused.message) == ("spec.source", message)
    elif refused is not None:
        assert refused.field == "spec.source.url"  # only the url's shape, never this rule


def test_local_files_are_refused_in_a_cluster_with_the_crd_message() -> None:
    _, message = _rule(SOURCE["properties"]["protocol"])
    body = {"metadata": {"name": "cam"}, "spec": {"source": {"protocol": "file", "url": "/x.mp4"}}}
    with pytest.raises(SpecError) as caught:
        parse_stream(body)
    assert (caught.value.field, caught.value.message) == ("spec.source.protocol", message)
    assert parse_stream(body, local_files=True).source.url == "/x.mp4"


def test_the_examples_parse_and_their_secrets_opt_in() -> None:
    from camstream import wire

    docs = list(yaml.safe_load_all((CRD.parents[1] / "examples" / "streams.yaml").read_text()))
    streams = [d for d in docs if d.get("kind") == "CameraStream"]
    secrets = [d for d in docs if d.get("kind") == "Secret"]
    assert streams and secrets
    for doc in streams:
        parse_stream(doc)  # as a cluster would: no local files, credentials checked
    for doc in secrets:
        labels = doc["metadata"].get("labels") or {}
        assert labels.get(wire.SECRET_USAGE_LABEL) == wire.SECRET_USAGE_VALUE, doc["metadata"]


def _spec_rule(message_start: str) -> dict[str, Any]:
    (found,) = [
        r for r in _SCHEMA["properties"]["spec"]["x-kubernetes-validations"]
        if r["message"].startswith(message_start)
    ]  # fmt: skip
    return dict(found)


_SRT_URLS = st.builds(
    lambda host, query: f"srt://{host}{query}",
    st.sampled_from(["127.0.0.1:9000", "enc.example:9000", "[::1]:9000", "enc:9000/"]),
    st.lists(
        st.sampled_from(
            ["?", "#", "&", "=", "passphrase", "PassPhrase", "pass", "phrase", "latency=200", "x"]
        ),
        max_size=6,
    ).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(url=_SRT_URLS)
def test_a_passphrase_in_an_srt_url_is_refused_alike(url: str) -> None:
    rule = _spec_rule("the passphrase must not")
    assert rule == {
        "rule": "self.source.protocol != 'srt' || !has(self.source.url) || "
        f"!self.source.url.matches(r'{spec.SRT_URL_PASSPHRASE_PATTERN}')",
        "message": spec.SRT_URL_PASSPHRASE_MESSAGE,
        "fieldPath": ".source.url",
    }
    crd_refuses = re.search(spec.SRT_URL_PASSPHRASE_PATTERN, url) is not None
    source = {"protocol": "srt", "url": url}
    try:
        parse_stream({"metadata": {"name": "cam"}, "spec": {"source": source}})
        refused = None
    except SpecError as err:
        refused = err
    if crd_refuses:
        assert refused is not None
        assert (refused.field, refused.message) == ("spec.source.url", rule["message"])
    elif refused is not None:
        assert refused.message != rule["message"]  # the url's shape, never this rule


@pytest.mark.parametrize(
    "url",
    [
        "srt://127.0.0.1:9000?passphrase=0123456789abc",
        "srt://127.0.0.1:9000?latency=200&PASSPHRASE=0123456789abc",
        "srt://127.0.0.1:9000/?pbkeylen=16&passphrase=0123456789abc#x",
    ],
)
def test_srt_pull_url_with_a_passphrase_is_refused_without_echoing_it(url: str) -> None:
    body = {"metadata": {"name": "cam"}, "spec": {"source": {"protocol": "srt", "url": url}}}
    with pytest.raises(SpecError) as caught:
        parse_stream(body)
    assert caught.value.field == "spec.source.url"
    assert "0123456789abc" not in str(caught.value)


def test_srt_url_without_a_passphrase_in_its_query_is_taken() -> None:
    for url in ("srt://127.0.0.1:9000", "srt://127.0.0.1:9000#passphrase"):
        body = {"metadata": {"name": "cam"}, "spec": {"source": {"protocol": "srt", "url": url}}}
        assert parse_stream(body).source.url == url
