"""Worker-to-worker requests, signed with the workers' shared peer token. Pure: no I/O.

Who calls this: cluster/fencing.py, on both ends of a handoff's fence (the
new owner signs its request, the old owner checks it; the old owner signs
its answer, which carries segments, and the new owner checks that).

Why a token of its own, not the edge's (CAMSTREAM_EDGE_TOKEN): the edge
token is also in every ingest edge pod, the tier that faces cameras on the
internet, and exists only when the edge is on; a fence stops a stream's
playlist, which nothing but a worker may ask for, and pulled streams are
handed off with no edge at all. So the chart gives the workers, and only
them, a `<release>-peer-token` Secret (CAMSTREAM_PEER_TOKEN). Without one,
workers neither send nor honour a fence (the new owner publishes as
before the fence existed); the endpoint is never open.

The signature: HMAC-SHA256 under the token of the method, the path and a
timestamp in whole seconds, sent as `Authorization: CamstreamPeer
t=<timestamp>,mac=<hex>`. The timestamp is on the cluster's clock
(clock.py; machines' wall clocks are seconds apart), and a signature more
than FRESH_SECONDS from the checker's clock is refused, so one seen on the
wire is worth that long, for that one path. Replayed within it, a fence
does what the first one did (the old owner honours it only once its ring
says it no longer serves the stream). The token never appears in a header,
a log line or an error: only MACs do.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from camstream_worker.protocols.rtmp import forwarded

__all__ = [
    "ANSWER",
    "ANSWER_HEADER",
    "FRESH_SECONDS",
    "MIN_TOKEN_LENGTH",
    "SCHEME",
    "TOKEN_ENV",
    "answer_path",
    "check",
    "sign",
    "token_from_env",
]

TOKEN_ENV = "CAMSTREAM_PEER_TOKEN"
MIN_TOKEN_LENGTH = forwarded.MIN_TOKEN_LENGTH
SCHEME = "CamstreamPeer"
# Two workers' readings of the cluster's clock differ by about a round trip
# to the API server each; a request takes at most a few seconds.
FRESH_SECONDS = 30.0
MAX_HEADER = 256  # "CamstreamPeer t=<~10 digits>,mac=<64 hex>" is ~90


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The workers' peer token, or None; read and checked as the edge token is
    (forwarded.py: at least MIN_TOKEN_LENGTH characters, or ValueError)."""
    return forwarded.token_from_env(environ, variable=TOKEN_ENV)


# An answer is signed as a request is, with this in place of the method and
# the answer's SHA-256 after its path: the fence's answer carries segments a
# new owner publishes, so it must come from a worker, not from whoever
# answers at the old owner's address.
ANSWER = "ANSWER"
ANSWER_HEADER = "X-Camstream-Peer-Answer"


def answer_path(path: str, body: bytes) -> str:
    """What an answer to a request for `path` is signed over: the path and its body's hash."""
    return f"{path}\n{hashlib.sha256(body).hexdigest()}"


def _mac(token: str, method: str, path: str, timestamp: int) -> str:
    message = f"{method.upper()}\n{path}\n{timestamp}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def sign(token: str, method: str, path: str, now: float) -> str:
    """The Authorization header value for `method` `path`, sent at cluster time `now`."""
    timestamp = int(now)
    return f"{SCHEME} t={timestamp},mac={_mac(token, method, path, timestamp)}"


def check(token: str | None, method: str, path: str, header: str | None, now: float) -> str | None:
    """Why the request is refused (a fixed phrase, safe to log and answer), or None if signed.

    `now`: the checker's reading of the cluster's clock.
    """
    if not token:
        return "no peer token configured here"
    if not header or len(header) > MAX_HEADER:
        return "no peer signature"
    scheme, _, params = header.partition(" ")
    fields = dict(part.partition("=")[::2] for part in params.split(","))
    if scheme != SCHEME or set(fields) != {"t", "mac"}:
        return "no peer signature"
    stamp = fields["t"]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return "bad peer signature"
    timestamp = int(stamp)
    offered = fields["mac"].encode()
    if not hmac.compare_digest(offered, _mac(token, method, path, timestamp).encode()):
        return "bad peer signature"
    if abs(now - timestamp) > FRESH_SECONDS:
        return "stale peer signature"
    return None
