"""Where a stream's packets come from: one small module per kind behind one interface.

``base`` declares the interface (``Source``, the ``PacketSink`` it feeds, the
``Context`` it is given); ``kinds`` makes the right one for a spec; ``rtsp``
(pull), ``rtmp`` (push), ``file`` (recordings and HTTP), ``synthetic`` (a
test pattern) implement it, and ``demux`` is the PyAV read loop the pulled
kinds share.
"""
