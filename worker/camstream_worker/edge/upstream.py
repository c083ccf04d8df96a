"""One RTMP publishing session from the edge to a worker.

Who calls this: an edge session (session.py) opens one `Upstream` per
worker it feeds (the owner, and a handoff's target). The edge is the RTMP
client here: handshake, Set Chunk Size, ``connect`` with the camera's app,
``createStream``, ``publish`` with the camera's stream name (which carries
its key), then the worker's ``onStatus`` says whether it took the publish
(``NetStream.Publish.Start``) or refused it (`Refused`, with the worker's
status code, never the key).

Media goes out one chunk per message (`OUT_CHUNK_SIZE` is the largest
message a worker takes), each read's messages in one write. Memory is
bounded: past `MAX_BUFFER` bytes queued for a worker that does not read,
`send` takes nothing more, and the session starts that worker again at the
next keyframe. What the worker sends back is read and dropped (its
acknowledgements and statuses); its end is `lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from camstream_worker.protocols.rtmp import chunks, handshake, messages

__all__ = ["MAX_BUFFER", "OPEN_TIMEOUT", "OUT_CHUNK_SIZE", "Refused", "Upstream"]

log = logging.getLogger(__name__)

# One chunk per message: a worker takes messages up to chunks.MAX_MESSAGE_SIZE.
OUT_CHUNK_SIZE = chunks.MAX_MESSAGE_SIZE
# Bytes queued for one worker before the edge stops feeding it until the next
# keyframe: 4 MiB is 32 s of a 1 Mbit/s camera, far more than a live worker lags.
MAX_BUFFER = 4 * 1024 * 1024
# From TCP connect to the worker's answer to the publish.
OPEN_TIMEOUT = 5.0
# Chunk streams the edge writes on (any ids a client likes; these are FFmpeg's).
CSID_AUDIO = 4
CSID_VIDEO = 6
CSID_DATA = 5
_CSIDS = {messages.AUDIO: CSID_AUDIO, messages.VIDEO: CSID_VIDEO}
# A fmt 0 chunk header in one pack: basic header (csid < 64), timestamp (24
# bits: 16 + 8), length (24 bits: 8 + 16), type, then the message stream id,
# which RTMP writes little-endian (packed here as its byte-swapped value).
_HEADER = struct.Struct(">BHBBHBI")
_EXTENDED = 0xFFFFFF


class Refused(Exception):
    """The worker refused the publish; `code` is its NetStream status code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"the worker refused the publish ({code})")
        self.code = code


class Upstream:
    """A publish to one worker; `send` media after `open`, `close` when done."""

    def __init__(
        self, worker: str, address: tuple[str, int], *, vouch: dict[str, str] | None = None
    ) -> None:
        """`vouch`: what the edge adds to its connect to vouch for the camera's address
        (protocols/rtmp/forwarded.py); never logged."""
        self.worker = worker
        self.address = address
        self._vouch = vouch or {}
        self.stream_id = 1
        self.batch: list[bytes] = []  # this read's framed messages, written by `flush`
        self.need_keyframe = True  # nothing but headers until the next keyframe
        self.sent_bytes = 0
        self.skipped = 0  # messages not sent: over MAX_BUFFER, or before a keyframe
        self.lost = asyncio.Event()  # the worker closed, or the edge did
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._drain: asyncio.Task[None] | None = None

    async def open(self, app: str, stream_name: str) -> None:
        """Connect and publish; raises Refused, TimeoutError or OSError (then closed)."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await self._open(app, stream_name)
        except BaseException:
            self.close()
            raise
        self._drain = asyncio.create_task(self._read_replies())

    async def _open(self, app: str, stream_name: str) -> None:
        reader, writer = await asyncio.open_connection(*self.address)
        self._reader, self._writer = reader, writer
        writer.write(handshake.client_hello())
        hello = await reader.readexactly(handshake.SERVER_HELLO_SIZE)
        host, port = self.address
        connect = [
            "connect",
            1.0,
            {
                "app": app,
                "type": "nonprivate",
                "flashVer": "FMLE/3.0 (camstream-edge)",
                "tcUrl": f"rtmp://{host}:{port}/{app}",
                **self._vouch,
            },
        ]
        writer.write(
            handshake.client_ack(hello)
            + messages.control(messages.SET_CHUNK_SIZE, messages.u32(OUT_CHUNK_SIZE), 128)
            + messages.command(0, connect, OUT_CHUNK_SIZE)
            + messages.command(0, ["createStream", 2.0, None], OUT_CHUNK_SIZE)
        )
        decoder = chunks.ChunkDecoder(max_message_size=64 * 1024, max_pending_bytes=128 * 1024)
        published = False
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("the worker closed before answering the publish")
            for message in decoder.feed(data):
                if message.type_id != messages.AMF0_COMMAND:
                    continue
                values = messages.command_values(message)
                name = values[0] if values else None
                if name == "_result" and len(values) > 3 and values[1] == 2.0:
                    if isinstance(values[3], float):
                        self.stream_id = int(values[3])
                    if not published:
                        published = True
                        writer.write(
                            messages.command(
                                self.stream_id,
                                ["publish", 3.0, None, stream_name, "live"],
                                OUT_CHUNK_SIZE,
                            )
                        )
                elif name == "onStatus" and len(values) > 3 and isinstance(values[3], dict):
                    code = str(values[3].get("code", ""))
                    if code == "NetStream.Publish.Start":
                        return
                    if code.startswith("NetStream.Publish."):
                        raise Refused(code[:64])
                elif name == "_error":
                    raise Refused("_error")

    async def _read_replies(self) -> None:
        assert self._reader is not None
        try:
            while await self._reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.lost.set()

    def buffered(self) -> int:
        writer = self._writer
        return 0 if writer is None else writer.transport.get_write_buffer_size()

    def frame(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        """One message as it goes to this worker: one chunk."""
        csid = _CSIDS.get(type_id, CSID_DATA)
        return chunks.encode_message(
            csid, type_id, self.stream_id, timestamp, payload, OUT_CHUNK_SIZE
        )

    def queue(self, type_id: int, timestamp: int, payload: bytes) -> None:
        """Add one message to this read's batch (`flush` writes it): `frame`'s bytes,
        with the header packed in one call and the payload not copied until the write."""
        timestamp &= 0xFFFFFFFF
        size = len(payload)
        if timestamp >= _EXTENDED or size > OUT_CHUNK_SIZE:
            self.batch.append(self.frame(type_id, timestamp, payload))
            return
        self.batch.append(
            _HEADER.pack(
                _CSIDS.get(type_id, CSID_DATA),
                timestamp >> 8,
                timestamp & 0xFF,
                size >> 16,
                size & 0xFFFF,
                type_id,
                int.from_bytes(self.stream_id.to_bytes(4, "little"), "big"),
            )
        )
        self.batch.append(payload)

    def flush(self) -> int | None:
        """Write this read's batch in one write: the bytes written, 0 for an empty
        batch, None when `write` refused it (nothing queued; the batch is gone)."""
        batch = self.batch
        if not batch:
            return 0
        data = b"".join(batch)
        batch.clear()
        return len(data) if self.write(data) else None

    def write(self, data: bytes) -> bool:
        """Queue bytes for the worker; False (nothing queued) past MAX_BUFFER or once lost."""
        writer = self._writer
        if writer is None or self.lost.is_set() or writer.is_closing():
            return False
        if writer.transport.get_write_buffer_size() + len(data) > MAX_BUFFER:
            return False
        writer.write(data)
        self.sent_bytes += len(data)
        return True

    def close(self) -> None:
        self.lost.set()
        if self._drain is not None:
            self._drain.cancel()
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.close()
