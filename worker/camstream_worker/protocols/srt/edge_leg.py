"""The edge's TCP leg to a worker for one SRT camera: its three lines, pure, no I/O.

Who calls this: the edge's SRT relay (edge/srt_relay.py) for each worker it
feeds a camera to, and the worker's leg port (servers/srt/edge_leg.py) for
each connection.

Why a leg of its own: the edge terminates the camera's SRT (reordering,
recovery, decryption) and used to open a second SRT connection per camera
to the worker, which cost the edge a second libsrt connection (its
threads, buffers and a packet per call) for bytes that cross a cluster
network. The decrypted MPEG-TS now goes over plain TCP, written once per
read batch. A TCP port that takes a stream's bytes must not be a way
around the stream's passphrase, so the leg opens with a challenge:

    worker → edge   CAMSTREAM-TS/1 <nonce: 32 hex>\n
    edge → worker   PUBLISH <namespace>/<name> <camera host:port> <proof: 64 hex>\n
    worker → edge   OK\n                       (then MPEG-TS, edge → worker, to the end)
                    NO <Reason>\n              (and the worker closes)

The proof is HMAC-SHA256 under the edge token of the nonce, the stream, the
camera's address and an HMAC of the same under the stream's passphrase: it
takes both secrets, so neither a leaked edge token nor a stream's
passphrase alone publishes over the leg (the SRT port still takes the
passphrase alone, with its own limits), and a fresh nonce per connection
means a proof seen on the wire is worth nothing later. Neither secret
crosses the wire. The edge sends nothing after its line until it reads OK,
so the worker reads the line without reading into the stream.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from camstream.spec import StreamKey
from camstream_worker.protocols.srt import streamid, vouch

__all__ = [
    "MAX_LINE",
    "REASONS",
    "LegError",
    "Request",
    "answer",
    "hello",
    "nonce_of",
    "parse_answer",
    "parse_request",
    "proof",
    "proven",
    "request",
]

VERSION = "CAMSTREAM-TS/1"
NONCE_BYTES = 16
# Bytes a line may have, the newline included: the request's longest is ~330
# (two 63-character labels, an IPv6 peer, the proof).
MAX_LINE = 512
# Why a worker refuses a leg; only these words cross (no peer-chosen text).
REASONS = {
    "Malformed": "the request is not a leg request",
    "Unauthorized": "the proof does not hold (wrong token or passphrase, or not a stream here)",
    "Capacity": "the worker's leg port is full",
}
_HEX = re.compile(r"^[0-9a-f]+$")


class LegError(ValueError):
    """A line that does not follow the leg's protocol; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class Request:
    key: StreamKey
    client: str  # the camera's "host:port", as the edge saw it
    proof: str


def hello(nonce: bytes) -> bytes:
    """The worker's first line: the challenge."""
    return f"{VERSION} {nonce.hex()}\n".encode()


def nonce_of(line: bytes) -> bytes:
    """The challenge in the worker's first line; LegError otherwise."""
    version, _, nonce = _text(line).partition(" ")
    if version != VERSION:
        raise LegError(f"not a camstream leg: {streamid.shown(version)}")
    if len(nonce) != 2 * NONCE_BYTES or not _HEX.match(nonce):
        raise LegError("the challenge is not a nonce")
    return bytes.fromhex(nonce)


def proof(token: str, passphrase: str, nonce: bytes, key: StreamKey, client: str) -> str:
    """The edge's answer to `nonce` for `client` publishing `key` (hex HMAC-SHA256)."""
    message = b"\n".join((nonce, f"{key.namespace}/{key.name}".encode(), client.encode()))
    knows_passphrase = hmac.new(passphrase.encode(), message, hashlib.sha256).digest()
    return hmac.new(token.encode(), message + b"\n" + knows_passphrase, hashlib.sha256).hexdigest()


def request(token: str, passphrase: str, nonce: bytes, key: StreamKey, client: str) -> bytes:
    """The edge's line: which stream, for which camera, and the proof."""
    signed = proof(token, passphrase, nonce, key, client)
    return f"PUBLISH {key.namespace}/{key.name} {client} {signed}\n".encode()


def parse_request(line: bytes) -> Request:
    """The edge's line, checked for form (not yet for its proof); LegError otherwise."""
    words = _text(line).split(" ")
    if len(words) != 4 or words[0] != "PUBLISH":
        raise LegError("not a PUBLISH line")
    key = streamid.parse(words[1])
    if isinstance(key, streamid.Refused) or words[1].startswith(streamid.PREFIX):
        raise LegError("the stream is not <namespace>/<name>")
    client, signed = words[2], words[3]
    if vouch.host_port(client) is None:
        raise LegError("the camera is not host:port")
    if len(signed) != 64 or not _HEX.match(signed):
        raise LegError("the proof is not 64 hex digits")
    return Request(key, client, signed)


def proven(token: str, passphrase: str, nonce: bytes, offered: Request) -> bool:
    """Whether `offered` answers `nonce` with both secrets."""
    expected = proof(token, passphrase, nonce, offered.key, offered.client)
    return hmac.compare_digest(expected.encode(), offered.proof.encode())


def answer(reason: str | None) -> bytes:
    """The worker's last line: OK (None), or a refusal's reason (a key of REASONS)."""
    if reason is None:
        return b"OK\n"
    assert reason in REASONS, reason
    return f"NO {reason}\n".encode()


def parse_answer(line: bytes) -> str | None:
    """None for OK, else the worker's reason as it may be logged; LegError for neither."""
    text = _text(line)
    if text == "OK":
        return None
    verdict, _, reason = text.partition(" ")
    if verdict != "NO" or reason not in REASONS:
        raise LegError(f"not an answer: {streamid.shown(text)}")
    return reason


def _text(line: bytes) -> str:
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise LegError(f"a line must end in a newline within {MAX_LINE} bytes")
    try:
        return line[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise LegError("a line must be ASCII") from None
