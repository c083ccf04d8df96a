"""camstream's real-media test harness: cameras, HLS checks and a browser player.

Imported by tests/media (worker tests), the end-to-end suite and bench/:

- ``tests.harness.cameras``: RtspCamera (GStreamer RTSP server), RtmpPusher
  (ffmpeg), make_clip, GarbageClient, free_port.
- ``tests.harness.hlscheck``: playlist parsing, ffprobe on segments,
  timestamp continuity, validate(), PlaylistWatcher.
- ``tests.harness.player``: play()/play_async() with hls.js in headless
  Chromium, PlayResult, HarnessServer.

Everything binds to loopback and stops only the processes it started. The
system needs what scripts/install-media-deps.sh installs.
"""
