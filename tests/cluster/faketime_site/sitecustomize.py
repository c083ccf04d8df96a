"""Loaded by Python at start-up in processes run with tests/cluster/faketime.py's env.

libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 breaks Python 3.11's
time.sleep (clock_nanosleep on an absolute monotonic deadline: EINVAL, see
faketime.py). This sleep waits in select() instead, with a relative timeout
the library does not touch, on the same monotonic clock.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
