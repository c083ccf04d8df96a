"""Cluster mode of the worker: a StatefulSet pod driven by the operator's ring.

Who calls this: `camstream worker` (cli.py here) in a worker pod. The agent
(agent.py) watches the ring ConfigMap and the CameraStreams of its partitions,
hands the engine the streams it must run, confirms handoffs through its
heartbeat Lease, reports stream status on change, and leaves gracefully on
SIGTERM. It never imports the operator: both sides share only camstream.*
(the ring, the handoff state machine and its wire format).
"""
