"""The worker's Prometheus metrics, all computed at scrape time: ``streams`` (one
family per stream figure) and ``worker`` (RTMP connections, partitions).
"""
