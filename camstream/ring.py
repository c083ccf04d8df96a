"""The consistent-hash ring: streams → partitions → worker pods. Pure, no I/O.

Who calls it: the operator, to plan ownership when workers come and go, to
label CameraStreams with their partition and to pick fallbacks for a crashed
worker; the workers, to learn what they own and who serves a stream; the ring
benchmark. Import the module, not names: ``from camstream import ring``.

This module is the public surface; the work is split by job:

- ``ring_table``: ``partition_of`` (stable BLAKE2b of ``"namespace/name"``,
  modulo P, a power of two), the ``RingTable`` (partition → owner, versioned)
  and ``transfers`` between two tables.
- ``ring_plan``: ``plan``, the deterministic, balanced, minimal claim
  algorithm, and ``resize`` (changing P as a planned migration).
  Its docstring states the algorithm and its guarantees.
- ``ring_prefs``: ``preference_list`` and ``effective_owners``, the riak-style
  ring walk that picks fallbacks for hinted handoff.
- ``ring_codec``: ``encode``/``decode``, the compact ConfigMap form.

A typical round, in the operator::

    old = ring.decode(configmap_value)
    table = ring.plan(old, ready_pods, partitions)   # `old` itself if nothing changes
    moves = ring.transfers(old, table)               # make before break, one by one
    serving = ring.effective_owners(table, up_pods)  # while a pod is down
"""

from __future__ import annotations

from camstream.ring_codec import FORMAT, decode, encode
from camstream.ring_plan import normalize_members, plan, remap, resize
from camstream.ring_prefs import effective_owners, preference_list
from camstream.ring_table import (
    RingTable,
    Transfer,
    check_partitions,
    is_power_of_two,
    key_hash,
    partition_of,
    stream_key,
    transfers,
)

__all__ = [
    "FORMAT",
    "RingTable",
    "Transfer",
    "check_partitions",
    "decode",
    "effective_owners",
    "encode",
    "is_power_of_two",
    "key_hash",
    "normalize_members",
    "partition_of",
    "plan",
    "preference_list",
    "remap",
    "resize",
    "stream_key",
    "transfers",
]
