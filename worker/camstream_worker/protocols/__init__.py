"""Wire protocols the worker speaks, as bytes in and values out: no sockets, no event loop.

The servers (camstream_worker.servers) and the sources (camstream_worker.sources)
drive them; here they can be tested byte for byte.
"""
