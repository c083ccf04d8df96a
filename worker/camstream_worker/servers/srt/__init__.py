"""The worker's SRT ingest: one UDP port, one thread, every publisher (``listener``).

``limits`` holds every number it holds a peer to; ``listener`` routes each
publisher by its stream ID (protocols/srt/streamid.py) to the stream whose
passphrase it knows, and hands the stream's MPEG-TS bytes over a Unix socket
to whoever runs the stream (an engine process, or this process's engine).
The binding to libsrt is camstream_worker/srt/libsrt.py. An ingest edge can
host `SrtListener` as it is: its interface is a table of streams in, and
sockets of MPEG-TS bytes out.
"""
