"""The worker's network servers, as peers: ``rtmp`` (ingest) and ``http`` (HLS,
player pages, API, metrics). They reach streams only through the interfaces
they are given (an RTMP Authorizer, an HTTP StreamDirectory), never the engine.
"""
