"""The worker's RTMP ingest: ``listener`` accepts publishers and is each
``connection``'s host; ``front`` is the public port of a worker with several
engine processes, which hands connections to them or ``relay``s them to the
worker that owns their stream. The bytes are protocols/rtmp's.
"""
