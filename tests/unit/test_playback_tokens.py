"""Signed playback tokens (camstream/playback_tokens.py), by properties.

What holds for every key, stream and time: a token verifies for what it
grants until it expires, and for nothing else; any change to its text, or
another key, is refused as invalid (401) rather than as "another stream"
(403); no input whatever makes verify raise anything but TokenError.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream import playback_tokens as tokens

namespaces = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?", fullmatch=True)
keys = st.binary(min_size=tokens.MIN_KEY_BYTES, max_size=64)
times = st.integers(min_value=0, max_value=2**40)
KEY = b"k" * tokens.MIN_KEY_BYTES


@given(keys, namespaces, names, times, st.integers(min_value=1, max_value=10**6))
def test_a_token_verifies_for_its_stream_until_it_expires(key, ns, name, now, left):
    grant = tokens.Grant(ns, name, now + left)
    token = tokens.sign(key, grant)
    assert tokens.verify(key, token, namespace=ns, name=name, now=now) == grant
    assert tokens.verify(key, token, namespace=ns, name=name, now=now + left - 0.5) == grant
    with pytest.raises(tokens.TokenExpired) as caught:
        tokens.verify(key, token, namespace=ns, name=name, now=now + left)
    assert caught.value.status == 401


@given(keys, namespaces, names, names, times)
def test_a_token_for_one_stream_is_refused_for_another_with_403(key, ns, name, other, now):
    token = tokens.sign(key, tokens.Grant(ns, name, now + 60))
    if other != name:
        with pytest.raises(tokens.TokenWrongStream) as caught:
            tokens.verify(key, token, namespace=ns, name=other, now=now)
        assert caught.value.status == 403
    with pytest.raises(tokens.TokenWrongStream):
        tokens.verify(key, token, namespace=ns + "x", name=name, now=now)


@given(keys, namespaces, names, times)
def test_a_namespace_wide_token_covers_its_namespace_only(key, ns, name, now):
    token = tokens.sign(key, tokens.Grant(ns, None, now + 60))
    assert tokens.verify(key, token, namespace=ns, name=name, now=now).name is None
    with pytest.raises(tokens.TokenWrongStream):
        tokens.verify(key, token, namespace="z" + ns, name=name, now=now)


@given(keys, keys, namespaces, names, times)
def test_another_key_is_a_forgery_not_another_stream(key, other_key, ns, name, now):
    token = tokens.sign(key, tokens.Grant(ns, name, now + 60))
    if other_key != key:
        with pytest.raises(tokens.TokenForged) as caught:
            tokens.verify(other_key, token, namespace=ns, name=name, now=now)
        assert caught.value.status == 401


@settings(max_examples=300)
@given(namespaces, names, times, st.data())
def test_any_change_to_the_text_is_refused_as_invalid(ns, name, now, data):
    token = tokens.sign(KEY, tokens.Grant(ns, name, now + 60))
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    changed = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify(KEY, changed, namespace=ns, name=name, now=now)
    assert caught.value.status == 401
    # Longer or shorter is refused too.
    for text in (token + "A", token[:-1], token[:position]):
        with pytest.raises(tokens.TokenError):
            tokens.verify(KEY, text, namespace=ns, name=name, now=now)


@settings(max_examples=300)
@given(st.text(max_size=600))
def test_garbage_raises_only_token_errors(text):
    with pytest.raises(tokens.TokenError):
        tokens.verify(KEY, text, namespace="default", name="cam", now=0)


def test_the_token_is_url_safe_and_readable():
    token = tokens.sign(KEY, tokens.Grant("site-a", "door.1", 1_900_000_000))
    assert token.startswith("v1.")
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert len(token) < 150


def test_key_length_is_enforced_without_quoting_the_key():
    with pytest.raises(tokens.KeyTooShort) as caught:
        tokens.signing_key("short-secret-value")
    assert "short-secret-value" not in str(caught.value)
    assert str(tokens.MIN_KEY_BYTES) in str(caught.value)
    assert tokens.signing_key("x" * 32) == b"x" * 32


def test_names_that_are_not_kubernetes_names_cannot_be_signed():
    for grant in (tokens.Grant("Default", "cam", 1), tokens.Grant("ns", "a/b", 1)):
        with pytest.raises(ValueError):
            tokens.sign(KEY, grant)
