"""Where a stream's packets come from: one small module per kind behind one interface.

``base`` declares the interface (``Source``, the ``PacketSink`` it feeds, the
``Context`` it is given); ``kinds`` makes the right one for a spec; ``rtsp``
(pull), ``rtmp`` (push), ``http`` (recordings and feeds over HTTP), ``file``
(recordings on disk, standalone mode only), ``synthetic`` (a test pattern)
implement it, and ``demux`` is the PyAV read loop the pulled kinds share.

What pulled sources may reach: ``policy`` (the deny-list and the file roots,
pure values), ``egress`` (checks every destination; the one way out) and its
``egress_proxy`` (FFmpeg's HTTP goes through it), and ``whitelists`` (what
FFmpeg may open for each kind).
"""
