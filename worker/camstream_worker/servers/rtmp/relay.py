"""Relaying a publisher to the worker that owns its stream.

Who calls this: the RTMP front (front.py), in a cluster, for a publisher that
reached this worker for a stream another worker serves. The relay opens an
RTMP session of its own to the owner (the client side of the handshake),
replays what the client sent from its connect on, and then copies bytes both
ways until either side closes, or until the ring names another owner
(`still_owner`, checked every RELAY_RECHECK seconds). It never parses the
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from camstream_worker.protocols.rtmp import handshake

log = logging.getLogger(__name__)

RELAY_RECHECK = 1.0  # seconds between checks that a relayed stream is still its owner's


def _always() -> bool:
    return True


async def relay(
    client: socket.socket,
    received: bytes,
    owner: tuple[str, int],
    *,
    still_owner: Callable[[], bool] = _always,
) -> None:
    """Pass `client` (after its handshake; `received` = its bytes since) to `owner`.

    Once `still_owner()` is false the relay ends, both ways, so the publisher
    reconnects (through the Service) to the new owner.
    """
    reader, writer = await asyncio.open_connection(*owner)
    try:
        writer.write(handshake.client_hello())
        server_hello = await reader.readexactly(handshake.SERVER_HELLO_SIZE)
        writer.write(handshake.client_ack(server_hello) + received)
        await writer.drain()
        client_reader, client_writer = await asyncio.open_connection(sock=client)
        copies = asyncio.gather(_copy(client_reader, writer), _copy(reader, client_writer))
        while not copies.done():
            try:
                await asyncio.wait_for(asyncio.shield(copies), timeout=RELAY_RECHECK)
            except TimeoutError:
                if not still_owner():
                    log.info("rtmp: the ring moved the stream off %s: relay dropped", owner[0])
                    client_writer.close()
                    writer.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await copies
    finally:
        writer.close()


async def _copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        target.close()
