"""The SRT stream ID parser (protocols/srt/streamid.py): both forms, every refusal, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.protocols.srt import streamid
from camstream_worker.protocols.srt.streamid import Refused

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
other_keys = st.sampled_from(["u", "s", "t", "h", "x"])


@given(labels, labels)
def test_plain_form_names_its_stream(namespace: str, name: str) -> None:
    assert streamid.parse(f"{namespace}/{name}") == StreamKey(namespace, name)


@given(
    labels,
    labels,
    st.lists(
        st.tuples(other_keys, st.from_regex(r"\A[a-zA-Z0-9_.]{0,12}\Z")), unique_by=lambda p: p[0]
    ),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_access_control_form_in_any_order(
    namespace: str, name: str, extra: list[tuple[str, str]], with_mode: bool, random: object
) -> None:
    items = [f"r={namespace}/{name}", *(f"{k}={v}" for k, v in extra)]
    if with_mode:
        items.append("m=publish")
    random.shuffle(items)  # type: ignore[attr-defined]
    assert streamid.parse("#!::" + ",".join(items)) == StreamKey(namespace, name)


@given(labels, labels)
def test_format_id_round_trips(namespace: str, name: str) -> None:
    key = StreamKey(namespace, name)
    assert streamid.parse(streamid.format_id(key)) == key


@given(st.text(max_size=600))
def test_any_text_is_a_stream_or_a_printable_bounded_reason(text: str) -> None:
    result = streamid.parse(text)
    if isinstance(result, Refused):
        assert result.reason and result.reason.isprintable() and len(result.reason) < 200
    else:
        assert isinstance(result, StreamKey)


@pytest.mark.parametrize(
    ("stream_id", "words"),
    [
        ("", "no stream ID"),
        ("#!::r=site/gate,m=request", "m='request'"),
        ("#!::m=publish", "no r="),
        ("#!::r=site/gate,r=site/other", "twice"),
        ("#!::r=site/gate,junk", "not key=value"),
        ("site", "not <namespace>/<name>"),
        ("Site/Gate", "not <namespace>/<name>"),
        ("site/gate/extra", "not <namespace>/<name>"),
        ("x" * 513, "longer than 512"),
    ],
)
def test_bad_ids_are_refused_with_a_reason(stream_id: str, words: str) -> None:
    result = streamid.parse(stream_id)
    assert isinstance(result, Refused)
    assert words in result.reason


def test_a_stranger_bytes_are_cut_and_printable() -> None:
    result = streamid.parse("#!::r=" + "\x00\x1b[31m" * 30)
    assert isinstance(result, Refused)
    assert "\x1b" not in result.reason and "\x00" not in result.reason and len(result.reason) < 120
