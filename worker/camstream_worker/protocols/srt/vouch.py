"""A camera's own address in the SRT stream ID the edge sends a worker: pure, no I/O.

Who calls this: the edge's SRT relay (edge/srt_relay.py) calls `stream_id`
for every connection it opens to a worker on a camera's behalf; the worker's
SRT listener (servers/srt/listener.py) calls `client_of` on every stream ID
it is given, when it has an edge token.

Why: behind an edge every SRT camera reaches the worker from the edge's
address, so the listener's per-address cap (servers/srt/limits.py, 32) would
count all cameras of an edge pod as one. The edge adds two keys to the
access-control form of the stream ID (protocols/srt/streamid.py ignores keys
it does not know):

    #!::r=<namespace>/<name>,m=publish,camstreamClient=<host>:<port>,camstreamProof=<hex>

The proof is an HMAC-SHA256 under the edge token (CAMSTREAM_EDGE_TOKEN) of
the client and the stream (protocols/rtmp/forwarded.py, shared with the RTMP
edge); SRT sends a stream ID in clear, so the token itself never goes into
one. A listener without a token, or a wrong proof, believes nothing: the
connection counts by its own peer address. A proof replayed by someone who
saw it vouches only for that camera's address publishing that stream, which
it had anyway.
"""

from __future__ import annotations

import ipaddress

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import forwarded
from camstream_worker.protocols.srt import streamid

__all__ = ["CLIENT", "PROOF", "client_of", "host_of", "stream_id"]

CLIENT = "camstreamClient"
PROOF = "camstreamProof"


def stream_id(key: StreamKey, token: str | None, client: str) -> str:
    """The stream ID the edge sends for a camera at `client` ("host:port"); without a token,
    the plain access-control form (the worker then counts the edge's address)."""
    plain = streamid.format_id(key)
    if not token or _host_port(client) is None:
        return plain
    subject = f"{key.namespace}/{key.name}"
    return f"{plain},{CLIENT}={client},{PROOF}={forwarded.proof(token, client, subject)}"


def client_of(raw_id: str, key: StreamKey, token: str | None) -> str | None:
    """The camera's "host:port" the edge vouches for in `raw_id` (which names `key`), if proven."""
    if not token or not raw_id.startswith(streamid.PREFIX):
        return None
    pairs: dict[str, str] = {}
    for item in raw_id[len(streamid.PREFIX) :].split(","):
        name, _, value = item.partition("=")
        pairs[name] = value
    client, offered = pairs.get(CLIENT), pairs.get(PROOF)
    if client is None or offered is None or _host_port(client) is None:
        return None
    if not forwarded.proven(token, client, f"{key.namespace}/{key.name}", offered):
        return None
    return client


def host_of(peer: str) -> str:
    """The host of a "host:port" peer (IPv6 without its brackets)."""
    return peer.rpartition(":")[0].strip("[]") or peer


def _host_port(client: str) -> tuple[str, int] | None:
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
