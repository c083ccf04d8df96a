"""Processes whose wall clock is seconds off, with Debian's libfaketime.

Who calls this: the churn suite's clock scenarios (test_e2e_clocks.py) put
`skewed_env(+8)` into a pod's environment, and test_faketime.py checks that
the library does what those scenarios rely on.

What libfaketime 0.9.10 (Debian 12's) does to a Python 3.11 process, found
by test_faketime.py's checks and upstream's issues:

- `FAKETIME=+8s` alone fakes CLOCK_MONOTONIC too, as the wall clock plus the
  offset, and does not intercept sem_clockwait: `threading.Event().wait(t)`
  then waits for ever (wolfcw/libfaketime#390). Unusable for our pods.
- With `FAKETIME_DONT_FAKE_MONOTONIC=1` the monotonic clock stays the
  system's, but the library's clock_nanosleep mangles absolute deadlines on
  CLOCK_MONOTONIC, which Python 3.11's `time.sleep` uses: EINVAL
  (wolfcw/libfaketime#426, fixed after 0.9.10).

So a skewed pod gets DONT_FAKE_MONOTONIC and a `sitecustomize` (in
faketime_site/) that makes `time.sleep` wait in select(), which takes a
relative timeout the library leaves alone. Nothing in camstream is patched:
only the interpreter's sleep, to get around the library's bug.
"""

from __future__ import annotations

import glob
from pathlib import Path

__all__ = ["library", "skewed_env"]

SITE = Path(__file__).resolve().parent / "faketime_site"
_PATTERNS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")


def library() -> Path:
    """Debian's libfaketime; FileNotFoundError naming the package when it is missing."""
    for pattern in _PATTERNS:
        for found in sorted(glob.glob(pattern)):
            return Path(found)
    raise FileNotFoundError(
        "libfaketime.so.1 not found: install Debian's `libfaketime` (scripts/bootstrap.sh test)"
    )


def skewed_env(offset_seconds: int) -> dict[str, str]:
    """Environment for a process whose wall clock runs `offset_seconds` off (monotonic not)."""
    return {
        "LD_PRELOAD": str(library()),
        "FAKETIME": f"{offset_seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(SITE),
    }
