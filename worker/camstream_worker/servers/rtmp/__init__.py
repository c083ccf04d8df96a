"""The worker's RTMP ingest: ``listener`` accepts publishers and is each
``connection``'s host (``host``); ``front`` is the public port of a worker with
several engine processes, which hands connections to them or ``relay``s them
to the worker that owns their stream. The bytes are protocols/rtmp's.

What holds them under abuse (docs/threat-model-rtmp.md): ``limits`` (every
number), ``admission`` (global and per-address caps), ``keygate`` (key
checks take turns per address, a pause after each failure), ``acceptor``
(an accept loop that survives EMFILE), ``outbox`` (write flow control),
``clocks`` (time without the server's own stalls, token buckets) and
``refusals`` (counted by reason, logged without flooding the log).
"""
