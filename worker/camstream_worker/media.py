"""Small facts about PyAV streams that several modules need.

Who calls this: session.py (status), outputs/thumbnail.py and outputs/transcode.py
(decoders).
"""

from __future__ import annotations

from typing import Any

import av


def coding_format(stream: av.stream.Stream) -> str:
    """The coding format ("h264"), never the encoder that made it ("libx264")."""
    return str(stream.codec_context.codec.canonical_name)


def decoder_for(stream: av.stream.Stream) -> Any:
    """A fresh decoder for a stream's packets, with its codec parameters."""
    decoder = av.CodecContext.create(coding_format(stream), "r")
    if stream.codec_context.extradata:
        decoder.extradata = stream.codec_context.extradata
    return decoder
