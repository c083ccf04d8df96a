"""RTMP ingest server (moving to servers/rtmp)."""
