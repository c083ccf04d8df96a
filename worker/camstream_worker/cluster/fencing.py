"""The fence at a handoff, between two workers: the old owner's endpoint, the new owner's call.

Who calls this: cli.py makes one `Fencing` per worker and adds its route to
the HTTP app (`add_route`); the agent (agent.py) calls `follow` for each
stream it took over in a handoff, once the ring's serving table says this
worker serves it.

Why (outputs/hls/sequence.py has the whole story): a handoff's new owner
numbers its segments provisionally, above anything the old owner can have
published, and publishes no playlist. Once it serves the stream it asks the
old owner, `POST /internal/fence/<namespace>/<name>`, to stop publishing
and say where it ended, handing over its newest segments; it then lists
those and renumbers its own to follow on without a hole, so a viewer's
player (routed to it by the same flip) never waits. No answer
within FENCE_SECONDS (the old owner crashed, refused, or cannot be reached)
and it publishes its provisional numbers, as before the fence.

The old owner honours a fence only when signed with the workers' peer token
(peer_auth.py) and only when its own ring says it no longer serves the
stream's partition; otherwise it refuses with 409, and the new owner, whose
ring may be ahead of the old owner's by a watch event, asks again every
RETRY_SECONDS until FENCE_SECONDS are up. Bounds: a request has no body
(413 otherwise), an answer is at most fence_answer.MAX_ANSWER_BYTES, one
fence per stream is in flight at each end (429 for another at the old
owner). Times cross on the cluster's clock (fence_answer.py).

    new owner                                   old owner
    ring: serving = me ──▶ POST fence (signed) ──▶ signed? (403) ring: not mine? (409)
                                                  writers fence() ──▶ 200 {last, end, tail}
    follow_on(last, end, tail) ◀────────────────────────────┘
    (no answer in 2 s: publish_provisional)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from camstream import ring
from camstream.handoff import RingDoc
from camstream.spec import StreamKey
from camstream_worker.outputs.hls.sequence import Fenced

from . import fence_answer, peer_auth

log = logging.getLogger("camstream.worker.fence")

PREFIX = "/internal/fence"
# How long a new owner waits for the old owner's answer before it publishes
# provisionally, and how often it asks again while the old owner's ring lags.
FENCE_SECONDS = 2.0
RETRY_SECONDS = 0.1
MAX_REFUSAL_BYTES = 200  # of a refusal's text, for the log line


def path_of(key: StreamKey) -> str:
    return f"{PREFIX}/{key.namespace}/{key.name}"


class FenceEngine(Protocol):
    async def fence(self, key: StreamKey) -> Fenced | None: ...

    async def follow_on(self, key: StreamKey, answers: Fenced | None) -> None: ...


class Fencing:
    def __init__(
        self,
        *,
        me: str,
        engine: FenceEngine,
        doc: Callable[[], RingDoc | None],
        http_port: int,
        token: str | None,
        offset: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0),
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`doc`: the ring this worker holds now; `token`: the peer token (None: no
        fence either way); `offset`: (low, high) of cluster minus wall time (clock.py)."""
        self._me = me
        self._engine = engine
        self._doc = doc
        self._port = http_port
        self._token = token
        self._offset = offset
        self._wall = wall
        self._serving: set[StreamKey] = set()  # fences being answered here
        self._asking: set[StreamKey] = set()  # fences this worker is asking for
        self._session: aiohttp.ClientSession | None = None
        self.answered = 0
        self.refused = 0
        self.unsigned = 0

    def _cluster_now(self) -> float:
        low, high = self._offset()
        return self._wall() + (low + high) / 2

    # -- the old owner's side

    def add_route(self, app: web.Application) -> None:
        app.router.add_post(f"{PREFIX}/{{ns}}/{{name}}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length or request.headers.get("Transfer-Encoding"):
            return self._refuse(413, "a fence request has no body")
        why = peer_auth.check(
            self._token,
            request.method,
            request.path,
            request.headers.get("Authorization"),
            self._cluster_now(),
        )
        if why is not None:
            return self._refuse(403, why, request.remote)
        key = StreamKey(request.match_info["ns"], request.match_info["name"])
        doc = self._doc()
        if doc is None:
            return self._refuse(409, "this worker has no ring yet")
        partition = ring.partition_of(ring.stream_key(key.namespace, key.name), doc.partitions)
        if doc.serving[partition] == self._me:
            return self._refuse(409, "this worker still serves the stream")
        if key in self._serving:
            return self._refuse(429, "a fence of this stream is in progress")
        self._serving.add(key)
        try:
            fenced = await self._engine.fence(key)
        finally:
            self._serving.discard(key)
        if fenced is None:
            return self._refuse(404, "the stream is not here")
        self.answered += 1
        low, high = offset = self._offset()
        log.info(
            "[%s] fenced for its new owner: %s (cluster clock known to %.3f s)",
            key,
            _said(fenced),
            high - low,
        )
        body = fence_answer.encode(fenced, offset)
        signed = peer_auth.sign(
            self._token or "",
            peer_auth.ANSWER,
            peer_auth.answer_path(request.path, body),
            self._cluster_now(),
        )
        return web.Response(
            body=body,
            content_type="application/json",
            headers={peer_auth.ANSWER_HEADER: signed},
        )

    def _refuse(self, status: int, why: str, peer: str | None = None) -> web.Response:
        self.refused += 1
        if status == 403:
            # The port faces viewers too: a stranger knocking is summarised, not echoed.
            self.unsigned += 1
            if self.unsigned == 1 or self.unsigned % 100 == 0:
                log.warning(
                    "fence refused (%s) from %s (%d so far)", why, peer or "?", self.unsigned
                )
        return web.Response(status=status, text=f"{why}\n")

    # -- the new owner's side

    async def follow(self, key: StreamKey, address: str | None) -> None:
        """Publish stream `key`, following on its old owner at `address` if it answers."""
        if key in self._asking:
            return
        self._asking.add(key)
        try:
            answers = None
            if self._token is not None and address:
                answers = await self._ask(key, address, self._token)
            await self._engine.follow_on(key, answers)
        finally:
            self._asking.discard(key)

    async def _ask(self, key: StreamKey, address: str, token: str) -> Fenced | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        path = path_of(key)
        url = f"http://{address}:{self._port}{path}"
        deadline = time.monotonic() + FENCE_SECONDS
        why = "no answer"
        while (left := deadline - time.monotonic()) > 0:
            headers = {"Authorization": peer_auth.sign(token, "POST", path, self._cluster_now())}
            try:
                async with self._session.post(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=left)
                ) as response:
                    body = await _read_bounded(response, fence_answer.MAX_ANSWER_BYTES + 1)
                    if response.status == 200:
                        forged = peer_auth.check(
                            token,
                            peer_auth.ANSWER,
                            peer_auth.answer_path(path, body),
                            response.headers.get(peer_auth.ANSWER_HEADER),
                            self._cluster_now(),
                        )
                        if forged is not None:
                            why = f"answer refused: {forged}"
                            break  # not a worker's: nothing of it is published
                        low, high = offset = self._offset()
                        fenced = fence_answer.decode(body, offset)
                        log.info(
                            "[%s] follows on its old owner: %s (cluster clock known to %.3f s)",
                            key,
                            _said(fenced),
                            high - low,
                        )
                        return fenced
                    why = body[:MAX_REFUSAL_BYTES].decode(errors="replace").strip()
                    if response.status != 409:
                        break  # refused for good: asking again changes nothing
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                why = type(exc).__name__
            await asyncio.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
        log.warning("[%s] old owner did not fence (%s): publishing provisionally", key, why)
        return None

    async def linger(self) -> None:
        """A worker that handed everything off waits this long before it stops its
        engine and HTTP server: the new owners of the partitions it handed off last
        are asking for their fence now (answered from what the stopped streams said)."""
        if self._token is not None:
            await asyncio.sleep(FENCE_SECONDS)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_bounded(response: aiohttp.ClientResponse, most: int) -> bytes:
    """The body, or its first `most` bytes: one read returns what has arrived."""
    body = bytearray()
    while len(body) < most and (chunk := await response.content.read(most - len(body))):
        body += chunk
    return bytes(body)


def _said(fenced: Fenced) -> str:
    return ", ".join(
        f"{name or 'hls'} {'-' if said is None else said.last}"
        + (f" (+{len(said.tail)} listed)" if said is not None and said.tail else "")
        for name, said in fenced.items()
    )
