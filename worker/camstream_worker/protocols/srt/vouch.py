"""A camera's own address in the SRT stream ID the edge sends a worker: pure, no I/O.

Who calls this: the edge's SRT relay (edge/srt_relay.py) calls `report_id`
for a camera it refused; the worker's SRT listener (servers/srt/listener.py)
calls `reported` and `client_of` on every stream ID it is given. The edge
no longer publishes to a worker's SRT port (it sends a camera's bytes over
a TCP leg, edge_leg.py, whose request line carries the camera's address
under its own proof); the worker still believes a publish stream ID from
`stream_id` so that edges of the previous release keep their cameras
through an upgrade that rolls the workers first.

Why: behind an edge every SRT camera reaches the worker from the edge's
address, so the listener's per-address cap (servers/srt/limits.py, 32) would
count all cameras of an edge pod as one. The edge adds two keys to the
access-control form of the stream ID (protocols/srt/streamid.py ignores keys
it does not know):

    #!::r=<namespace>/<name>,m=publish,camstreamClient=<host>:<port>,camstreamProof=<hex>

The same form carries the edge's report of a camera it refused (a wrong
passphrase: the edge's listener is the one that ran the key exchange), so
the stream's owner, its status's one writer, can show it (`report_id`,
`reported`): one more key, `camstreamRefused=<reason>`, and the proof then
covers the reason too, so a vouch for a publish seen on the wire cannot be
turned into a report, nor a report into a publish.

The proof is an HMAC-SHA256 under the edge token (CAMSTREAM_EDGE_TOKEN) of
the client and the stream (protocols/rtmp/forwarded.py, shared with the RTMP
edge); SRT sends a stream ID in clear, so the token itself never goes into
one. A listener without a token, or a wrong proof, believes nothing: the
connection counts by its own peer address. A proof replayed by someone who
saw it vouches only for that camera's address publishing that stream, which
it had anyway; a replayed report shows again a refusal that anyone may
cause with a wrong passphrase at the edge, and on a stream that is not
live only (stream.py's `note`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.protocols.srt import streamid

__all__ = [
    "CLIENT",
    "PROOF",
    "REFUSED",
    "Report",
    "client_of",
    "host_of",
    "host_port",
    "report_id",
    "reported",
    "stream_id",
]

CLIENT = "camstreamClient"
PROOF = "camstreamProof"
REFUSED = "camstreamRefused"
_REASON_MAX = 32  # a reason is a CamelCase word (the listener's table), never free text


@dataclass(frozen=True, slots=True)
class Report:
    """An edge's report in a stream ID: `client` is None when its proof does not hold."""

    client: str | None
    reason: str


def stream_id(key: StreamKey, token: str | None, client: str) -> str:
    """The stream ID the edge sends for a camera at `client` ("host:port"); without a token,
    the plain access-control form (the worker then counts the edge's address)."""
    plain = streamid.format_id(key)
    if not token or host_port(client) is None:
        return plain
    return f"{plain},{CLIENT}={client},{PROOF}={forwarded.proof(token, client, _subject(key))}"


def client_of(raw_id: str, key: StreamKey, token: str | None) -> str | None:
    """The camera's "host:port" the edge vouches for in `raw_id` (which names `key`), if proven."""
    if not token:
        return None
    return _proven_client(_pairs(raw_id), token, _subject(key))


def report_id(key: StreamKey, token: str | None, client: str, reason: str) -> str | None:
    """The stream ID with which the edge reports that it refused `client` ("host:port")
    publishing `key` for `reason`; None without a token or a valid client (no report)."""
    if not token or host_port(client) is None or not _plain_word(reason):
        return None
    subject = _subject(key, reason)
    return (
        f"{streamid.format_id(key)},{CLIENT}={client},{REFUSED}={reason},"
        f"{PROOF}={forwarded.proof(token, client, subject)}"
    )


def reported(raw_id: str, key: StreamKey, token: str | None) -> Report | None:
    """The edge's report in `raw_id` (which names `key`), or None when it carries none.

    A report whose proof does not hold (no token here, another token) comes
    back with no client: the caller refuses it and believes nothing."""
    pairs = _pairs(raw_id)
    reason = pairs.get(REFUSED)
    if reason is None:
        return None
    if not token or not _plain_word(reason):
        return Report(None, streamid.shown(reason))
    return Report(_proven_client(pairs, token, _subject(key, reason)), reason)


def _pairs(raw_id: str) -> dict[str, str]:
    if not raw_id.startswith(streamid.PREFIX):
        return {}
    pairs: dict[str, str] = {}
    for item in raw_id[len(streamid.PREFIX) :].split(","):
        name, _, value = item.partition("=")
        pairs[name] = value
    return pairs


def _subject(key: StreamKey, reason: str | None = None) -> str:
    """What a proof covers beside the client: the stream, and a report's reason."""
    subject = f"{key.namespace}/{key.name}"
    return subject if reason is None else f"{subject}\nrefused={reason}"


def _proven_client(pairs: dict[str, str], token: str, subject: str) -> str | None:
    client, offered = pairs.get(CLIENT), pairs.get(PROOF)
    if client is None or offered is None or host_port(client) is None:
        return None
    if not forwarded.proven(token, client, subject, offered):
        return None
    return client


def _plain_word(text: str) -> bool:
    return 0 < len(text) <= _REASON_MAX and text.isascii() and text.isalpha()


def host_of(peer: str) -> str:
    """The host of a "host:port" peer (IPv6 without its brackets)."""
    return peer.rpartition(":")[0].strip("[]") or peer


def host_port(client: str) -> tuple[str, int] | None:
    """An IP address and port from "host:port" ("[v6]:port"), or None for anything else."""
    host, colon, port = client.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None
    if (address.version == 6) != bracketed:
        return None
    return str(address), int(port)
