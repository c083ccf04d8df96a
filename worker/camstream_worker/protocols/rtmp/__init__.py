"""RTMP as bytes: handshake, chunk stream, messages, AMF0 values, FLV tags, log-safe names.

Layered bottom-up: ``handshake`` (before the chunk stream), ``chunks``
(messages out of the byte stream and back), ``amf0`` (command and metadata
values), ``messages`` (the message types a publishing session uses, and the
replies a server sends), ``flv`` (audio/video tag bodies to codec configs and
packets), ``names`` (stream names and publish URLs as logs may show them).
``publish`` declares what receives one publish's media. Nothing here does I/O.
"""
