"""The reasons an RTMP connection is refused: the label values of
``camstream_rtmp_rejected_total`` (metrics/worker.py).

Who calls this: the RTMP servers' refusal counters (servers/rtmp/refusals.py),
which run in every engine process, and the metrics that export them. Apart
from worker.py so that an engine process, which serves no /metrics, does not
load prometheus_client (~8 MB of heap a process) to count its refusals.
"""

from __future__ import annotations

from collections.abc import Mapping

# A fixed set, whatever a client sends (docs/threat-model-rtmp.md says what
# triggers each).
RTMP_REFUSAL_REASONS: Mapping[str, str] = {
    "unauthorized": "unknown stream or wrong stream key",
    "protocol": "not RTMP, or RTMP the server does not allow",
    "timeout": "not publishing in time, or a publisher gone silent",
    "capacity": "the worker's connection cap (sized from its file descriptors) is reached",
    "per_address": "too many connections not publishing yet from one address",
    "too_large": "a message, or the bytes sent before publishing, over their cap",
    "flood": "too many messages (empty, tiny or pings) for the time",
    "slow_reader": "the client does not read what the server sends",
}
