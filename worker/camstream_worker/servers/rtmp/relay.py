"""Relaying a publisher to the worker that owns its stream.

Who calls this: the RTMP front (front.py), in a cluster, for a publisher that
reached this worker for a stream another worker serves. The relay opens an
RTMP session of its own to the owner (the client side of the handshake),
replays what the client sent from its connect on, and then copies bytes both
ways until either side closes. It never parses the stream.
"""

from __future__ import annotations

import asyncio
import socket

from camstream_worker.protocols.rtmp import handshake


async def relay(client: socket.socket, received: bytes, owner: tuple[str, int]) -> None:
    """Pass `client` (after its handshake; `received` = its bytes since) to `owner`."""
    reader, writer = await asyncio.open_connection(*owner)
    try:
        writer.write(handshake.client_hello())
        server_hello = await reader.readexactly(handshake.SERVER_HELLO_SIZE)
        writer.write(handshake.client_ack(server_hello) + received)
        await writer.drain()
        client_reader, client_writer = await asyncio.open_connection(sock=client)
        await asyncio.gather(_copy(client_reader, writer), _copy(reader, client_writer))
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
