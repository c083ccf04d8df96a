"""What a stream's packets become: the HLS copy, the ABR ladder, the stills.

A stream (camstream_worker/stream.py) hands every source session to its
outputs: ``hls`` (segments and playlists, always), ``transcode`` (renditions
and a master playlist, when enabled) and ``thumbnail`` (a periodic JPEG, when
enabled). Outputs never know where packets come from.
"""
