"""HLS output: ``writer`` cuts segments and keeps the live playlist, ``playlist``
renders playlists (pure), ``fmp4`` makes fragmented MP4 segments, ``sequence``
decides where a stream's media sequence starts on a worker (pure).
"""
