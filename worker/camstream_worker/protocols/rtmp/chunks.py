"""RTMP chunk stream: split the byte stream into messages, and back.

Called by the RTMP connection (``servers/rtmp/connection.py``) and front: every
batch of bytes read from a publisher's socket goes to ``ChunkDecoder.feed``,
which returns the complete messages in it; the server's replies go out through
``encode_message`` (``messages`` builds them). Pure:
no sockets, no clocks, so the tricky header rules are unit-tested byte for byte.

The rules (RTMP 1.0 spec, section 5.3, as FFmpeg and librtmp implement them):

- A chunk is a basic header (fmt: 2 bits, chunk stream id: 6 bits, or 1 or 2
  more bytes for ids 64..65599), a message header of 11/7/3/0 bytes for fmt
  0/1/2/3, an optional 4-byte extended timestamp, then up to ``chunk_size``
  bytes of payload.
- fmt 0 carries an absolute timestamp, length, type and message stream id;
  fmt 1 a timestamp delta, length and type; fmt 2 only a delta; fmt 3 nothing.
  Missing fields come from the previous header on the same chunk stream.
- A fmt 3 chunk either continues the message in progress on its chunk stream
  or, when none is in progress, starts a new one with the previous length,
  type and stream id and the previous timestamp field added again (FFmpeg's
  and librtmp's reading of the spec).
- A timestamp field of 0xFFFFFF means the real value follows as a 4-byte
  extended timestamp; fmt 3 chunks after such a header repeat those 4 bytes.
- Set Chunk Size (type 1) and Abort (type 2) change how the *following* chunks
  are read, so the decoder applies them itself as soon as they complete (and
  still returns them, so the server can log them).

Timestamps are returned modulo 2**32, as on the wire; the FLV layer unwraps them.

The decoder is hardened against hostile peers (docs/threat-model-rtmp.md):

- Memory: message lengths are capped, the number of chunk streams is capped,
  and the bytes held in half-assembled messages are bounded; the connection
  lowers these caps until a publish is accepted (``set_limits``).
- Time: decoding is linear in the bytes fed. A chunk size below 128 (SRS's
  minimum) is refused, so every chunk but a message's last carries at least
  128 payload bytes; the run of continuation chunks a publisher sends back to
  back is checked with a doubling window, so an interleaved stream costs one
  step per chunk, never a scan of the rest of the buffer.
- Fairness: ``decode(budget=N)`` stops after N chunks and says so
  (``backlog``); the connection continues on the next turn of the event
  loop, so one peer's read cannot hold the loop. Empty messages carry
  nothing and are not returned, but count in ``messages`` (the connection
  rate-limits them with everything else).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "ABORT",
    "DEFAULT_CHUNK_SIZE",
    "MAX_MESSAGE_SIZE",
    "MIN_CHUNK_SIZE",
    "SET_CHUNK_SIZE",
    "ChunkDecoder",
    "ChunkError",
    "ChunkTooLarge",
    "RtmpMessage",
    "encode_message",
]

DEFAULT_CHUNK_SIZE = 128
# SRS refuses smaller chunks too: at chunk size 1 every payload byte costs a
# header and a step of the decoder, which is how a peer made decoding slow.
MIN_CHUNK_SIZE = 128
MAX_MESSAGE_SIZE = 8 * 1024 * 1024  # a keyframe of a 4K camera fits easily
MAX_CHUNK_STREAMS = 64  # real publishers use about five
MAX_CHUNK_SIZE = 0xFFFFFF  # the spec's limit (message lengths are 24-bit)

# The two message types the chunk layer itself obeys (messages.py has the rest).
SET_CHUNK_SIZE = 1
ABORT = 2

_EXTENDED = 0xFFFFFF
# Messages of up to this many continuation chunks may take the one-copy path
# (_whole): a 64 KB frame at FFmpeg's 4096, 2 KB at the minimum of 128. Past
# that, a list of views per chunk costs more than the general path's slicing
# (bench/rtmp_bench.py, librtmp 128).
_WHOLE_MAX_CHUNKS = 16

_U32 = struct.Struct(">I")
_U32_LE = struct.Struct("<I")
_HEADER_SIZES = (11, 7, 3, 0)


class ChunkError(ValueError):
    """The peer broke the chunk stream rules; the connection cannot continue."""


class ChunkTooLarge(ChunkError):
    """A message, or the bytes held in unfinished messages, over the decoder's caps."""


@dataclass(slots=True)
class RtmpMessage:
    """One reassembled RTMP message.

    Not frozen: one is made per audio or video frame, and a frozen
    dataclass's __init__ (object.__setattr__ per field) costs three times a
    plain one's (0.64 against 0.20 us here). Nobody changes or hashes it.
    """

    csid: int  # chunk stream it arrived on
    type_id: int  # 1..6 protocol control, 8 audio, 9 video, 18/20 AMF0 data/command...
    stream_id: int  # message stream id (0 = the connection's control stream)
    timestamp: int  # milliseconds, modulo 2**32
    payload: bytes


class _ChunkStream:
    """Header state carried from chunk to chunk on one chunk stream id."""

    __slots__ = (
        "body",
        "delta",
        "extended",
        "length",
        "received",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0  # of the current/last message
        self.delta = 0  # the last timestamp field, re-applied by a fmt 3 new message
        self.extended = False  # the last header used an extended timestamp
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.body = bytearray()  # payload of the message in progress (grows as it comes)
        self.received = 0  # bytes of it so far; 0 = no message in progress


class ChunkDecoder:
    """Reassembles RTMP messages from the bytes of one connection (after the handshake)."""

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        max_pending_bytes: int | None = None,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_chunk_streams = max_chunk_streams
        self.set_limits(max_message_size=max_message_size, max_pending_bytes=max_pending_bytes)
        self._pending = 0
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self.messages = 0  # messages completed, empty ones included
        self.backlog = False  # the last decode() stopped at its budget: whole chunks may remain

    def set_limits(self, *, max_message_size: int, max_pending_bytes: int | None = None) -> None:
        """Change the caps (the connection raises them once a publish is accepted)."""
        self._max_message_size = max_message_size
        # Several chunk streams may each hold a half message; bound their sum.
        self._max_pending = (
            max_pending_bytes if max_pending_bytes is not None else 2 * max_message_size
        )

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete chunk."""
        return len(self._buf)

    @property
    def pending(self) -> int:
        """Bytes held in messages not complete yet."""
        return self._pending

    def feed(self, data: bytes | bytearray | memoryview) -> list[RtmpMessage]:
        """Take the next bytes of the connection; return every message they complete."""
        self.push(data)
        return self.decode()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the connection without decoding them yet."""
        self._buf += data

    def decode(self, budget: int | None = None) -> list[RtmpMessage]:
        """The messages completed by the bytes pushed so far, after at most `budget` chunks.

        A run of back-to-back continuation chunks counts as one. When the
        budget ran out, ``backlog`` is True and the caller calls again later.
        """
        buf = self._buf
        out: list[RtmpMessage] = []
        self.backlog = False
        end = len(buf)
        if not end:
            return out
        # Every step consumes at least one byte, so end + 1 steps is no budget.
        limit = end + 1 if budget is None else budget
        pos = 0
        steps = 0
        done = 0  # messages completed (added to self.messages once, at the end)
        append = out.append
        streams = self._streams
        chunk_size = self.chunk_size
        max_size = self._max_message_size
        view = memoryview(buf)
        try:
            while pos < end:
                if steps >= limit:
                    self.backlog = True
                    break
                steps += 1
                # -- basic header
                b0 = buf[pos]
                fmt = b0 >> 6
                csid = b0 & 0x3F
                p = pos + 1
                if csid == 0:
                    if p + 1 > end:
                        break
                    csid = 64 + buf[p]
                    p += 1
                elif csid == 1:
                    if p + 2 > end:
                        break
                    csid = 64 + buf[p] + (buf[p + 1] << 8)
                    p += 2
                hsize = _HEADER_SIZES[fmt]
                if p + hsize > end:
                    break
                st = streams.get(csid)
                if st is None:
                    if fmt != 0:
                        raise ChunkError(f"chunk stream {csid} starts with a fmt {fmt} header")
                    if len(streams) >= self._max_chunk_streams:
                        raise ChunkError(f"more than {self._max_chunk_streams} chunk streams")
                    st = _ChunkStream()
                    streams[csid] = st
                # -- message header, into locals until the whole chunk is here
                received = st.received
                if fmt == 3:
                    continuing = received > 0
                    field = st.delta
                    extended = st.extended
                    length = st.length
                    type_id = st.type_id
                    stream_id = st.stream_id
                else:
                    continuing = False
                    field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                    extended = field == _EXTENDED
                    if fmt == 2:
                        length = st.length
                        type_id = st.type_id
                        stream_id = st.stream_id
                    else:
                        length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                        type_id = buf[p + 6]
                        stream_id = _U32_LE.unpack_from(buf, p + 7)[0] if fmt == 0 else st.stream_id
                p += hsize
                if extended:
                    if p + 4 > end:
                        break
                    if not continuing:
                        field = _U32.unpack_from(buf, p)[0]
                    p += 4
                if length > max_size:
                    raise ChunkTooLarge(f"message length {length} exceeds the {max_size} byte cap")
                if not continuing:
                    received = 0
                take = length - received
                if take > chunk_size:
                    take = chunk_size
                q = p + take
                if q > end:
                    break
                # -- the whole chunk is present: commit it
                if not continuing:
                    if st.received:
                        # A new header in the middle of a message: the sender dropped
                        # the old one (as Abort would); do the same.
                        self._pending -= st.received
                        st.body = bytearray()
                        st.received = 0
                    if fmt == 0:
                        st.timestamp = field
                    else:
                        st.timestamp = (st.timestamp + field) & 0xFFFFFFFF
                    st.delta = field
                    st.extended = extended
                    st.length = length
                    st.type_id = type_id
                    st.stream_id = stream_id
                pos = q
                if received == 0 and take == length:
                    done += 1
                    if not length:
                        continue  # an empty message carries nothing (but was counted)
                    payload = bytes(view[p:q])  # whole message in one chunk
                elif received == 0 and csid < 64 and (
                    whole := _whole(buf, view, p, q, end, 0xC0 | csid, 5 if extended else 1,
                                    chunk_size, length - take)
                ) is not None:  # fmt: skip
                    # All its chunks back to back (how publishers send): one copy.
                    # Held for a moment like any message: the same cap applies.
                    if self._pending + length > self._max_pending:
                        raise ChunkTooLarge(
                            f"more than {self._max_pending} bytes held in unfinished messages"
                        )
                    pos, payload = whole
                    done += 1
                else:
                    body = st.body
                    body += view[p:q]
                    received += take
                    if received < length and csid < 64:
                        pos, missing = _continuations(
                            buf, view, pos, end, 0xC0 | csid, 5 if extended else 1,
                            chunk_size, length - received, body,
                        )  # fmt: skip
                        received = length - missing
                    self._pending += received - st.received
                    st.received = received
                    if self._pending > self._max_pending:
                        raise ChunkTooLarge(
                            f"more than {self._max_pending} bytes held in unfinished messages"
                        )
                    if received < length:
                        continue
                    payload = bytes(body)
                    st.body = bytearray()
                    st.received = 0
                    self._pending -= length
                    done += 1
                append(RtmpMessage(csid, type_id, stream_id, st.timestamp, payload))
                if 0 < type_id <= ABORT:  # Set Chunk Size (1) or Abort (2)
                    self._control(type_id, payload)
                    chunk_size = self.chunk_size
        finally:
            self.messages += done
            view.release()
            del buf[:pos]
        return out

    def _control(self, type_id: int, payload: bytes) -> None:
        """Apply Set Chunk Size / Abort, which change how the next chunks are read."""
        if len(payload) < 4:
            raise ChunkError(f"protocol control message {type_id} shorter than 4 bytes")
        (value,) = _U32.unpack_from(payload, 0)
        if type_id == SET_CHUNK_SIZE:
            value &= 0x7FFFFFFF  # the top bit is reserved
            if not MIN_CHUNK_SIZE <= value <= MAX_CHUNK_SIZE:
                raise ChunkError(
                    f"chunk size {value} outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
                )
            self.chunk_size = value
        else:
            st = self._streams.get(value)
            if st is not None and st.received:
                self._pending -= st.received
                st.body = bytearray()
                st.received = 0


def _whole(
    buf: bytearray,
    view: memoryview,
    start: int,
    pos: int,
    end: int,
    marker: int,
    skip: int,
    size: int,
    rest: int,
) -> tuple[int, bytes] | None:
    """A message's payload when all its continuation chunks are here, back to back.

    The common case for video (a frame of a few KB is two or three chunks at
    FFmpeg's 4096): the first chunk's payload is ``view[start:pos]`` and
    ``rest`` bytes follow in fmt 3 chunks (``marker``, ``skip`` header bytes,
    ``size`` payload bytes each). Checked with one strided slice, copied
    once by ``bytes.join``, nothing held in the chunk stream's body. None
    when the run is incomplete or irregular, or longer than
    ``_WHOLE_MAX_CHUNKS``: the general path takes it. That bound keeps a
    failed look cheap: a message start costs at least one chunk of 128
    bytes, so a peer that starts message after message in front of a long
    buffer gets a look of at most 16 header bytes each, never a scan of the
    buffer (decoding stays linear; the general path's own run check is the
    doubling window of ``_continuations``).
    Returns the position after the message and its payload.
    """
    count = -(-rest // size)  # continuation chunks
    if count > _WHOLE_MAX_CHUNKS:
        return None
    stride = skip + size
    last = pos + (count - 1) * stride  # the last chunk's header
    stop = last + skip + rest - (count - 1) * size
    if stop > end:
        return None
    if count == 1:
        if buf[pos] != marker:
            return None
        return stop, b"".join((view[start:pos], view[pos + skip : stop]))
    if buf[pos : last + 1 : stride].lstrip(bytes((marker,))):
        return None
    pieces = [view[start:pos]]
    pieces += [view[at + skip : at + stride] for at in range(pos, last, stride)]
    pieces.append(view[last + skip : stop])
    return stop, b"".join(pieces)


def _continuations(
    buf: bytearray,
    view: memoryview,
    pos: int,
    end: int,
    marker: int,
    skip: int,
    size: int,
    need: int,
    body: bytearray,
) -> tuple[int, int]:
    """Take a message's continuation chunks that sit back to back at ``pos``.

    Publishers send all chunks of a message in a row, each a one-byte fmt 3
    header (``marker``, plus a repeated 4-byte extended timestamp: ``skip``)
    and ``size`` payload bytes. Those runs are checked and unpacked with
    slice operations in C instead of a Python step per chunk, which would be
    most of the decoding time for publishers that keep the default 128-byte
    chunks (FFmpeg raises its chunk size to 4096, librtmp may not).

    The run's length is found with a doubling window (1, 2, 4, ... chunks'
    header bytes compared at a time), so finding a run of n chunks costs
    O(n) however long the buffer behind it is: a peer that interleaves
    chunk streams gets one cheap look per chunk, not a scan of the rest.
    Anything irregular (another chunk stream, data not here yet) ends the run
    and is left to the general path. Returns the new position and the bytes
    still needed.
    """
    stride = skip + size
    full = min(need // size, (end - pos) // stride)
    mark = bytes((marker,))
    taken = 0
    window = 1
    while taken < full:
        count = min(window, full - taken)
        start = pos + taken * stride
        regular = count - len(buf[start : start + count * stride : stride].lstrip(mark))
        taken += regular
        if regular < count:
            break
        window *= 2
    if taken:
        region = buf[pos : pos + taken * stride]
        for k in range(skip):  # drop each chunk's header bytes
            del region[:: stride - k]
        body += region
        pos += taken * stride
        need -= taken * size
    if 0 < need < size and pos + skip + need <= end and buf[pos] == marker:
        body += view[pos + skip : pos + skip + need]
        pos += skip + need
        need = 0
    return pos, need


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid < 64:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid < 320:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid < 65600:
        rest = csid - 64
        return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} out of range")


def encode_message(
    csid: int,
    type_id: int,
    stream_id: int,
    timestamp: int,
    payload: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """One message as chunks: a fmt 0 chunk, then fmt 3 continuations."""
    if len(payload) > 0xFFFFFF:
        raise ValueError("message longer than 16 MiB")
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= _EXTENDED
    ts_field = _EXTENDED if extended else timestamp
    ext = _U32.pack(timestamp) if extended else b""
    out = bytearray(_basic_header(0, csid))
    out += ts_field.to_bytes(3, "big")
    out += len(payload).to_bytes(3, "big")
    out.append(type_id)
    out += _U32_LE.pack(stream_id)
    out += ext
    cont = _basic_header(3, csid) + ext
    for start in range(0, max(len(payload), 1), chunk_size):
        if start:
            out += cont
        out += payload[start : start + chunk_size]
    return bytes(out)
