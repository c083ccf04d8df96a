"""A relayed publisher follows the ring (servers/rtmp/relay.py, #14).

Real loopback sockets: an owner that completes the server side of the RTMP
handshake and echoes what follows, and a publisher socket handed to the
relay as the front hands it. While `still_owner()` holds the relay copies
both ways; once it turns false (the ring moved the stream) the relay ends
within about RELAY_RECHECK and the publisher sees its connection close, so a
real camera reconnects to the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from camstream_worker.protocols.rtmp import forwarded, handshake
from camstream_worker.servers.rtmp import relay
from camstream_worker.servers.rtmp.front import RtmpFront
from camstream_worker.servers.rtmp.limits import Limits
from tests.harness.rtmp_client import RtmpClient


@contextlib.asynccontextmanager
async def echo_owner() -> AsyncIterator[tuple[str, int]]:
    """An RTMP 'owner' on 127.0.0.1: handshake, then echo every byte."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        shake = handshake.ServerHandshake()
        try:
            while not shake.done:
                data = await reader.read(65536)
                if not data:
                    return
                reply = shake.feed(data)
                if reply:
                    writer.write(reply)
            writer.write(shake.rest)
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _read_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = b""
    while len(out) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, n - len(out)), 5)
        if not chunk:
            break
        out += chunk
    return out


async def test_relay_copies_while_the_owner_holds_and_ends_when_the_ring_moves() -> None:
    owner_holds = True
    async with echo_owner() as owner:
        publisher, front_side = socket.socketpair()
        publisher.setblocking(False)
        front_side.setblocking(False)
        task = asyncio.create_task(
            relay.relay(front_side, b"connect", owner, still_owner=lambda: owner_holds)
        )
        try:
            # What the front had read (the connect) reaches the owner and comes back.
            assert await _read_exactly(publisher, 7) == b"connect"
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(publisher, b"media")
            assert await _read_exactly(publisher, 5) == b"media"
            # Past a recheck with the owner unchanged, the relay still runs.
            await asyncio.sleep(relay.RELAY_RECHECK * 1.5)
            assert not task.done()
            # The ring names another owner: the relay ends and the publisher is cut.
            moved_at = time.monotonic()
            owner_holds = False
            await asyncio.wait_for(task, relay.RELAY_RECHECK * 3)
            ended = time.monotonic() - moved_at
            assert ended <= relay.RELAY_RECHECK + 0.5, ended
            assert await _read_exactly(publisher, 1) == b""  # closed: the camera reconnects
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
            publisher.close()
            front_side.close()


class _Engines:
    """The front's Router: records which apps it was handed (the engine process's side)."""

    processes = 1

    def __init__(self) -> None:
        self.handed: list[str] = []

    def hand_over(self, app: str, sock: socket.socket, received: bytes, at: float) -> None:
        self.handed.append(app)


def _connect(port: int, props: dict[str, str]) -> None:
    with RtmpClient(port) as client:
        client.handshake()
        client.command("connect", 1.0, {"app": "cams/door", **props})
        time.sleep(0.5)  # stays connected while the front routes it


async def _route_one(props: dict[str, str], token: str) -> tuple[list[str], int]:
    """One publisher's connect through a front whose ring names another owner."""
    async with echo_owner() as owner:
        engines = _Engines()
        front = RtmpFront(
            engines,  # type: ignore[arg-type]  # the Router protocol's one method and field
            "127.0.0.1",
            0,
            owner=lambda key: owner,
            limits=Limits(),
            edge_token=token,
        )
        await front.start()
        try:
            await asyncio.to_thread(_connect, front.port, props)
            return engines.handed, front.relayed
        finally:
            await front.close()


async def test_the_front_relays_a_camera_but_never_what_an_edge_sends() -> None:
    """A camera that landed on the wrong worker is relayed to the owner; an ingest
    edge's publish is not: the edge follows the ring itself and feeds a handoff's
    target beside the owner, and a target that relayed it to the owner replaced
    the edge's own publisher there (#15). It goes to the engine, which takes
    it or refuses it (and the edge calls again)."""
    token = "edge-token-of-this-test-0123456789"
    handed, relayed = await _route_one({}, token)
    assert (handed, relayed) == ([], 1)
    vouched = forwarded.connect_props(token, "127.0.0.9")
    handed, relayed = await _route_one(vouched, token)
    assert (handed, relayed) == (["cams/door"], 0)
    # A wrong token vouches for nothing: relayed, as any camera.
    handed, relayed = await _route_one(forwarded.connect_props("x" * 34, "127.0.0.9"), token)
    assert (handed, relayed) == ([], 1)
