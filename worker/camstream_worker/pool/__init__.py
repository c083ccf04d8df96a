"""One engine process per core behind one RTMP port: ``sharded`` (the pool, with
the Engine interface), ``process`` (the parent's handle of one engine process),
``child`` (the engine process itself) and ``ipc`` (the channels between them).
"""
