"""RTMP limits that need lowered numbers to reach, on an in-process server.

A real worker (test_rtmp_attacks.py) cannot be made to write 256 KiB to a
client that never reads: every reply it sends is small and budgeted. So the
slow-reader rule is shown here on an ``RtmpServer`` with a ping budget large
enough to fill the write queue, and the switch from a stranger's limits to a
publisher's with a message just over the first and well under the second.
Real sockets on loopback, the scripted client of tests/harness/rtmp_client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

import pytest

from tests.harness.rtmp_client import DATA, VIDEO, Closed, RtmpClient
from tests.media.test_rtmp_server import GOOD_KEY, CollectingSink, Keys, rtmp_server, until

pytestmark = [pytest.mark.security, pytest.mark.timeout(60)]

AVCC = bytes.fromhex("0164001fffe100046764001f01000468ee3cb0")


async def test_a_client_that_never_reads_is_dropped_as_a_slow_reader() -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    options = dict(
        write_high_water=1 << 20,  # never skip the replies...
        max_write_buffer=16 * 1024,  # ...so the queue reaches the cap
        pings_per_second=1e6,
        ping_burst=1e6,
        messages_per_second=1e6,
        message_burst=1e6,
    )
    async with rtmp_server(keys, **options) as server:

        def flood() -> RtmpClient:
            client = RtmpClient(server.port, receive_buffer=2048)
            client.handshake()
            assert client.publish("live", GOOD_KEY) == "NetStream.Publish.Start"
            pings = b"".join(client_ping(n) for n in range(200))  # 200 pings a send
            # 6 MB of replies: more than the kernel buffers (tcp_wmem's 4 MiB).
            with contextlib.suppress(Closed):
                for _ in range(1700):
                    client.raw(pings)
            return client

        client = await asyncio.to_thread(flood)
        try:
            # Not reading a byte meanwhile: the server must give up on us.
            await until(lambda: server.stats()["refused_slow_reader"] == 1, within=20)
            await until(lambda: server.stats()["connections"] == 0, what="the socket released")
            assert await asyncio.to_thread(client.closed_within, 5)
        finally:
            client.close()
        assert keys.sink(GOOD_KEY).closed == ["more than 16384 bytes left unread"]


def client_ping(stamp: int) -> bytes:
    # fmt 0 on chunk stream 2: user control (4), event 6 (ping request)
    payload = struct.pack(">HI", 6, stamp)
    return b"\x02" + bytes(3) + len(payload).to_bytes(3, "big") + b"\x04" + bytes(4) + payload


async def test_messages_are_small_until_the_publish_is_accepted() -> None:
    keys = Keys({GOOD_KEY: CollectingSink})
    async with rtmp_server(keys) as server:

        def stranger() -> bool:
            with RtmpClient(server.port) as client:
                client.handshake()
                client.connect("live")
                try:
                    client.send(4, DATA, 0, 0, b"\x05" * 100_000)  # 100 kB before publishing
                except Closed:
                    return True
                return client.closed_within(5)

        def publisher() -> None:
            with RtmpClient(server.port) as client:
                client.handshake()
                assert client.publish("live", GOOD_KEY) == "NetStream.Publish.Start"
                client.set_chunk_size(65536)
                client.tag(VIDEO, 0, b"\x17\x00\x00\x00\x00" + AVCC)
                frame = b"\x00" * (1 << 20)  # a 1 MiB keyframe: fine from a publisher
                nalu = struct.pack(">I", len(frame)) + frame
                client.tag(VIDEO, 40, b"\x17\x01\x00\x00\x00" + nalu)
                assert not client.closed_within(1)

        def chatty_stranger() -> bool:
            # Messages each under 64 KiB, and fewer than 64, but 300 kB in all.
            with RtmpClient(server.port) as client:
                client.handshake()
                client.connect("live")
                try:
                    for _ in range(50):
                        client.send(4, DATA, 0, 0, b"\x05" * 6000)
                except Closed:
                    return True
                return client.closed_within(5)

        assert await asyncio.to_thread(stranger)
        assert server.stats()["refused_too_large"] == 1
        assert await asyncio.to_thread(chatty_stranger)
        assert server.stats()["refused_too_large"] == 2
        await asyncio.to_thread(publisher)
        sink = keys.sink(GOOD_KEY)
        assert [len(p.data) for p in sink.packets] == [4 + (1 << 20)]


async def test_a_closed_connection_does_not_linger_on_a_client_that_never_reads() -> None:
    """A refusal with megabytes still queued: flushed for close_grace, then aborted."""
    keys = Keys({GOOD_KEY: CollectingSink})
    options = dict(
        write_high_water=1 << 30,
        max_write_buffer=1 << 30,  # never a slow reader: the close has to end it
        pings_per_second=1e6,
        ping_burst=1e6,
        messages_per_second=1e6,
        message_burst=1e6,
        close_grace=0.5,
    )
    async with rtmp_server(keys, **options) as server:
        baseline = len(os.listdir("/proc/self/fd"))

        def flood_then_garbage() -> RtmpClient:
            client = RtmpClient(server.port, receive_buffer=2048)
            client.handshake()
            assert client.publish("live", GOOD_KEY) == "NetStream.Publish.Start"
            pings = b"".join(client_ping(n) for n in range(200))
            for _ in range(1700):  # 6 MB of replies queued, none read
                client.raw(pings)
            client.raw(b"\xc9" + bytes(64))  # fmt 3 on a chunk stream never opened
            return client

        client = await asyncio.to_thread(flood_then_garbage)
        try:
            await until(lambda: server.stats()["refused_protocol"] == 1, within=20)
            # The server's socket is gone (only the client's own is still open)...
            await until(
                lambda: len(os.listdir("/proc/self/fd")) <= baseline + 1,
                within=5,
                what="the server's socket to be aborted",
            )
        finally:
            client.close()
