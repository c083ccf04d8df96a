"""Start and stop the child processes of the test bed.

Called by controlplane.py (etcd, kube-apiserver, ...) and nodeagent.py (pod
processes). Children get SIGKILL from the kernel if the Python process that
started them dies (PR_SET_PDEATHSIG), so a crashed or killed test run never
leaves an apiserver or a pod behind. They are stopped by their own PID only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["GroupReaper", "spawn", "stop", "tail", "wait_until"]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The signal fires when the
    # *thread* that forked exits, so callers spawn from long-lived threads.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Own session: a Ctrl-C in the developer's terminal reaches only
            # the Python parent, which then stops children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # needed for PDEATHSIG
        )


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM `proc`, SIGKILL it after `grace` seconds; return its exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return proc.returncode


# Reads "+PGID" / "-PGID" lines; at end of input (the node agent exited, cleanly
# or not) it SIGKILLs every group still listed.
_REAPER = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line:
        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupReaper:
    """Kills pod process groups even if the node agent dies abruptly.

    PR_SET_PDEATHSIG reaches only a pod's main process; its own children
    would be orphaned. This helper process learns each pod's process group
    over a pipe and kills the groups still alive when the pipe closes, which
    the kernel does however the agent's process ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C to the test run must not end it first
        )

    def _send(self, line: str) -> None:
        with self._lock:
            stdin = self._proc.stdin
            if stdin is not None and not stdin.closed:
                stdin.write(line + "\n")
                stdin.flush()

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def discard(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Kill whatever is still listed and wait for the reaper to finish."""
        with self._lock:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                self._proc.stdin.close()
        self._proc.wait(timeout=30)


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(condition, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `condition()` until it returns a truthy value; raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
