"""SRT as values: the stream ID a publisher names its stream with (``streamid``).

The transport itself is libsrt's (camstream_worker.srt.libsrt); nothing here does I/O.
"""
