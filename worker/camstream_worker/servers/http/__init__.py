"""The worker's HTTP server: ``server`` (routes, headers, files), ``paths``
(which URLs may name files; pure), ``proxy`` (forwarding to the owning
worker), ``pages`` (JSON and HTML views of statuses; pure).
"""
