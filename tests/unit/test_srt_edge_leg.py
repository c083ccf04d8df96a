"""The lines of the edge's TCP leg to a worker (protocols/srt/edge_leg.py): pure, by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.protocols.srt import edge_leg
from tests.unit.test_srt_vouch import clients, keys

TOKEN = "edge-token-0123456789abcdef"
PASSPHRASE = "gate-passphrase-0123"
KEY = StreamKey("default", "gate")
NONCE = bytes(range(16))

nonces = st.binary(min_size=16, max_size=16)
secrets = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=10, max_size=79)


@given(keys, clients, nonces)
def test_the_worker_reads_back_what_the_edge_sent_and_the_proof_holds(
    key: StreamKey, client: str, nonce: bytes
) -> None:
    assert edge_leg.nonce_of(edge_leg.hello(nonce)) == nonce
    line = edge_leg.request(TOKEN, PASSPHRASE, nonce, key, client)
    assert len(line) <= edge_leg.MAX_LINE
    got = edge_leg.parse_request(line)
    assert (got.key, got.client) == (key, client)
    assert edge_leg.proven(TOKEN, PASSPHRASE, nonce, got)
    assert TOKEN.encode() not in line and PASSPHRASE.encode() not in line


@given(keys, clients, nonces, secrets, secrets)
def test_the_proof_needs_both_secrets_and_this_nonce(
    key: StreamKey, client: str, nonce: bytes, other_token: str, other_passphrase: str
) -> None:
    """A leaked token alone, a passphrase alone, or a proof replayed to a new challenge,
    publishes nothing."""
    got = edge_leg.parse_request(edge_leg.request(TOKEN, PASSPHRASE, nonce, key, client))
    if other_token != TOKEN:
        assert not edge_leg.proven(other_token, PASSPHRASE, nonce, got)
    if other_passphrase != PASSPHRASE:
        assert not edge_leg.proven(TOKEN, other_passphrase, nonce, got)
    fresh = bytes(b ^ 1 for b in nonce)
    assert not edge_leg.proven(TOKEN, PASSPHRASE, fresh, got)


@given(keys, clients, nonces)
def test_a_proof_covers_the_stream_and_the_camera(
    key: StreamKey, client: str, nonce: bytes
) -> None:
    got = edge_leg.parse_request(edge_leg.request(TOKEN, PASSPHRASE, nonce, key, client))
    elsewhere = StreamKey(key.namespace, key.name + "x" if len(key.name) < 63 else "x")
    moved = edge_leg.Request(elsewhere, got.client, got.proof)
    assert not edge_leg.proven(TOKEN, PASSPHRASE, nonce, moved)
    other_client = "127.0.0.1:1" if client != "127.0.0.1:1" else "127.0.0.1:2"
    assert not edge_leg.proven(
        TOKEN, PASSPHRASE, nonce, edge_leg.Request(key, other_client, got.proof)
    )


@given(st.binary(max_size=2 * edge_leg.MAX_LINE))
def test_any_bytes_are_a_request_or_a_leg_error(line: bytes) -> None:
    for parse in (edge_leg.parse_request, edge_leg.nonce_of, edge_leg.parse_answer):
        try:
            parse(line)
        except edge_leg.LegError as exc:
            assert len(str(exc)) < 120  # a peer's bytes are shown cut, if at all


@pytest.mark.parametrize(
    "line",
    [
        b"PUBLISH default/gate 127.0.0.1:5000 " + b"a" * 64,  # no newline
        b"PUBLISH default/gate 127.0.0.1:5000 " + b"a" * 63 + b"\n",
        b"PUBLISH default/gate 127.0.0.1:5000 " + b"A" * 64 + b"\n",  # upper-case hex
        b"PUBLISH #!::r=default/gate 127.0.0.1:5000 " + b"a" * 64 + b"\n",
        b"PUBLISH Default/gate 127.0.0.1:5000 " + b"a" * 64 + b"\n",
        b"PUBLISH default/gate camera:5000 " + b"a" * 64 + b"\n",
        b"PUBLISH default/gate 127.0.0.1:5000 " + b"a" * 64 + b" extra\n",
        b"PLAY default/gate 127.0.0.1:5000 " + b"a" * 64 + b"\n",
        b"PUBLISH default/gate 127.0.0.1:5000 " + b"a" * 64 + b"\n\x00",  # bytes past the line
    ],
)
def test_malformed_requests_are_refused(line: bytes) -> None:
    with pytest.raises(edge_leg.LegError):
        edge_leg.parse_request(line)


def test_answers_round_trip_and_unknown_reasons_are_errors() -> None:
    assert edge_leg.parse_answer(edge_leg.answer(None)) is None
    for reason in edge_leg.REASONS:
        assert edge_leg.parse_answer(edge_leg.answer(reason)) == reason
    with pytest.raises(edge_leg.LegError):
        edge_leg.parse_answer(b"NO Because-I-said-so\n")
    with pytest.raises(edge_leg.LegError):
        edge_leg.nonce_of(b"CAMSTREAM-TS/2 " + NONCE.hex().encode() + b"\n")
