"""A camera's own address, as the ingest edge vouches for it to a worker.

Who calls this: the edge (edge/upstream.py) puts `connect_props` into the
``connect`` it sends a worker for each camera; the worker's RTMP connections
(servers/rtmp/connection.py) ask `vouched_client` about every ``connect``.

Without it, every camera behind an edge pod would share the edge's address
at the worker, so the worker's per-address key gate (a 2 s pause after a
refused key) and cap of strangers would make one key-guessing client stall
every camera of that edge, and a burst of reconnects after a worker restart
hit the cap. With it, the worker counts each camera by its own address, as
the edge does. Like PROXY protocol or X-Forwarded-For, it is believed only
from a peer that proves it is an edge: with the shared secret of the chart's
`<release>-edge-token` Secret (CAMSTREAM_EDGE_TOKEN, in the edge and worker
pods both). Without a token configured, nothing is believed. The token
never appears in a log line, a status or an error. Pure: no I/O.

SRT has no ``connect`` properties, and its stream ID travels in clear in the
handshake, so the SRT edge does not send the token: it sends an HMAC of the
camera's address and the stream under the token (`proof`, checked with
`proven`); protocols/srt/vouch.py puts both into the stream ID.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "connect_props",
    "proof",
    "proven",
    "token_from_env",
    "vouched_client",
]

TOKEN_ENV = "CAMSTREAM_EDGE_TOKEN"
MIN_TOKEN_LENGTH = 16
_TOKEN = "camstreamEdgeToken"
_CLIENT = "camstreamClient"


def token_from_env(
    environ: Mapping[str, str] | None = None, *, variable: str = TOKEN_ENV
) -> str | None:
    """The edge token of this pod (or the shared secret in `variable`), or None; a
    token too short to be a secret is refused (ValueError, whose message names the
    variable, never the value)."""
    token = (os.environ if environ is None else environ).get(variable, "")
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{variable} is shorter than {MIN_TOKEN_LENGTH} characters")
    return token


def connect_props(token: str | None, client_host: str) -> dict[str, str]:
    """What the edge adds to a ``connect`` for a camera at `client_host` (none: no token)."""
    return {_TOKEN: token, _CLIENT: client_host} if token else {}


def vouched_client(props: Mapping[str, object], token: str | None) -> str | None:
    """The camera's address the edge vouches for in these ``connect`` properties, if proven."""
    offered = props.get(_TOKEN)
    client = props.get(_CLIENT)
    if not token or not isinstance(offered, str) or not isinstance(client, str):
        return None
    if not hmac.compare_digest(offered.encode(), token.encode()):
        return None
    return _address(client)


def proof(token: str, client: str, subject: str) -> str:
    """The edge's proof that it vouches for `client` publishing `subject` (hex HMAC-SHA256).

    Unlike the token itself, a proof seen on the wire vouches for nothing else."""
    message = f"{client}\n{subject}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def proven(token: str | None, client: str, subject: str, offered: str) -> bool:
    """Whether `offered` is the edge's proof for `client` and `subject` (never without a token)."""
    if not token:
        return False
    return hmac.compare_digest(offered.encode(), proof(token, client, subject).encode())


def _address(client: str) -> str | None:
    try:
        return str(ipaddress.ip_address(client))
    except ValueError:
        return None
