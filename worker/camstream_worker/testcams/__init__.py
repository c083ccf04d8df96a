"""Stand-ins for real cameras, shipped with the worker so the demo runs from an install.

``launch`` builds the command lines: ``rtsp_camera.py`` (GStreamer's RTSP
server, a script run by Debian's own Python) and an FFmpeg RTMP publisher.
The demo (app/demo.py) starts them; the test harness (tests/harness) starts
the same ones with more knobs.
"""
