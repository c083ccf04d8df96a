"""The standalone worker as people run it: ``cli`` (the `run` and `demo`
commands), ``config`` (their settings, parsed once into typed values),
``standalone`` (manifests in, engine + RTMP + HTTP up) and ``demo`` (the
same with test cameras). Cluster mode's entry point is cluster/cli.py.
"""
