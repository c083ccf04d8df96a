"""The SRT edge's proof of a camera's address in a stream ID (protocols/srt/vouch.py)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.protocols.srt import streamid, vouch

TOKEN = "edge-token-0123456789abcdef"
KEY = StreamKey("default", "gate")

labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
keys = st.builds(StreamKey, labels, labels)
ports = st.integers(0, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
clients = st.builds(lambda host, port: f"{host}:{port}", st.one_of(v4, v6), ports)


@given(keys, clients)
def test_the_worker_with_the_token_reads_back_what_the_edge_vouched(
    key: StreamKey, client: str
) -> None:
    raw = vouch.stream_id(key, TOKEN, client)
    assert len(raw) <= streamid.MAX_LENGTH
    assert streamid.parse(raw) == key  # the extra keys do not change the stream
    expected = str(ipaddress.ip_address(vouch.host_of(client)))
    got = vouch.client_of(raw, key, TOKEN)
    assert got is not None and vouch.host_of(got) == expected
    assert TOKEN not in raw  # SRT sends the stream ID in clear: a proof, never the token


@given(keys, clients, st.text(min_size=16, max_size=40))
def test_no_token_or_another_token_believes_nothing(
    key: StreamKey, client: str, other: str
) -> None:
    raw = vouch.stream_id(key, TOKEN, client)
    assert vouch.client_of(raw, key, None) is None
    assert vouch.client_of(raw, key, "") is None
    if other != TOKEN:
        assert vouch.client_of(raw, key, other) is None


@given(clients)
def test_a_proof_vouches_for_its_own_client_and_stream_only(client: str) -> None:
    raw = vouch.stream_id(KEY, TOKEN, client)
    assert vouch.client_of(raw, StreamKey("default", "other"), TOKEN) is None
    forged = raw.replace(f"{vouch.CLIENT}={client}", f"{vouch.CLIENT}=10.9.9.9:1")
    if forged != raw:
        assert vouch.client_of(forged, KEY, TOKEN) is None


def test_a_camera_cannot_vouch_for_itself() -> None:
    """Without the token, made-up keys in a camera's own stream ID are not believed."""
    raw = f"{streamid.format_id(KEY)},{vouch.CLIENT}=10.0.0.1:5,{vouch.PROOF}={'0' * 64}"
    assert vouch.client_of(raw, KEY, TOKEN) is None
    assert vouch.client_of("default/gate", KEY, TOKEN) is None  # the plain form carries none


def test_no_token_at_the_edge_sends_the_plain_stream_id() -> None:
    assert vouch.stream_id(KEY, None, "127.0.0.1:5000") == streamid.format_id(KEY)
    assert vouch.stream_id(KEY, TOKEN, "not-an-address") == streamid.format_id(KEY)


@given(st.text(max_size=80))
def test_garbage_clients_are_never_believed(client: str) -> None:
    raw = f"{streamid.format_id(KEY)},{vouch.CLIENT}={client},{vouch.PROOF}=" + forwarded.proof(
        TOKEN, client, "default/gate"
    )
    got = vouch.client_of(raw, KEY, TOKEN)
    if got is not None:  # only a well-formed host:port, proven, comes back
        host, _, port = got.rpartition(":")
        ipaddress.ip_address(host.strip("[]"))
        assert 0 <= int(port) <= 65535


@given(keys, clients)
def test_a_report_reads_back_with_its_client_and_reason(key: StreamKey, client: str) -> None:
    raw = vouch.report_id(key, TOKEN, client, "WrongPassphrase")
    assert raw is not None and len(raw) <= streamid.MAX_LENGTH and TOKEN not in raw
    assert streamid.parse(raw) == key
    report = vouch.reported(raw, key, TOKEN)
    assert report is not None and report.reason == "WrongPassphrase"
    assert report.client is not None
    assert vouch.host_of(report.client) == str(ipaddress.ip_address(vouch.host_of(client)))


@given(clients)
def test_a_report_and_a_publish_vouch_cannot_stand_for_each_other(client: str) -> None:
    report = vouch.report_id(KEY, TOKEN, client, "WrongPassphrase")
    publish = vouch.stream_id(KEY, TOKEN, client)
    assert report is not None
    assert vouch.client_of(report, KEY, TOKEN) is None  # a report opens no publish
    assert vouch.reported(publish, KEY, TOKEN) is None  # a publish carries no report
    # The proof covers the reason: another reason put in its place is not proven.
    forged = report.replace("=WrongPassphrase,", "=BitrateExceeded,")
    assert vouch.reported(forged, KEY, TOKEN) == vouch.Report(None, "BitrateExceeded")
    # Nor the stream, nor another token's edge.
    assert vouch.reported(report, StreamKey("default", "other"), TOKEN) == vouch.Report(
        None, "WrongPassphrase"
    )
    assert vouch.reported(report, KEY, "another-token-0123456789").client is None  # type: ignore[union-attr]
    assert vouch.reported(report, KEY, None).client is None  # type: ignore[union-attr]


def test_a_report_carries_a_word_never_free_text() -> None:
    assert vouch.report_id(KEY, TOKEN, "127.0.0.1:5", "wrong, passphrase") is None
    assert vouch.report_id(KEY, TOKEN, "127.0.0.1:5", "x" * 33) is None
    assert vouch.report_id(KEY, None, "127.0.0.1:5", "WrongPassphrase") is None
    raw = f"{streamid.format_id(KEY)},{vouch.REFUSED}=<script>{'y' * 80}"
    report = vouch.reported(raw, KEY, TOKEN)
    assert report is not None and report.client is None and len(report.reason) < 50
