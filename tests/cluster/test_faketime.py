"""libfaketime shifts a pod's wall clock and nothing else (tests/cluster/faketime.py).

The clock scenarios of the churn suite rely on it: a skewed process must see
time.time() off by the offset while its monotonic clock stays the machine's
(the operator judges Leases by monotonic observation; if that clock jumped
too, the scenarios would test nothing), and its sleeps and timed waits must
still work. Fails, not skips, when the library is missing: bootstrap installs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from .faketime import library, skewed_env

PROBE = """
import asyncio, json, threading, time
wall, mono = time.time(), time.monotonic()
started = time.monotonic()
time.sleep(0.2)
threading.Event().wait(0.2)
asyncio.run(asyncio.sleep(0.2))
print(json.dumps({"wall": wall, "mono": mono, "waited": time.monotonic() - started}))
"""


def test_libfaketime_is_installed() -> None:
    assert library().is_file()


@pytest.mark.parametrize("offset", [8, -8])
def test_wall_clock_shifts_and_monotonic_does_not(offset: int) -> None:
    before_wall, before_mono = time.time(), time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", **skewed_env(offset)},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    after_mono = time.monotonic()
    seen = json.loads(out.stdout)
    # The child's wall clock is ours plus the offset (give or take its start-up).
    assert abs(seen["wall"] - before_wall - offset) < 2.0, seen
    # Its monotonic clock is the machine's: inside our own before/after readings.
    assert before_mono <= seen["mono"] <= after_mono, (before_mono, seen, after_mono)
    # Sleeps and timed waits last what they say (three of 0.2 s).
    assert 0.55 <= seen["waited"] < 3.0, seen
