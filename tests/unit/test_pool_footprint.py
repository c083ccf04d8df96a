"""What each of the pool's processes loads, and the channels that start an engine.

A standalone worker with an engine pool is a front (HTTP, the RTMP port, the
pool) and its engine processes; every module a process imports is heap that
process holds for its whole life, once per process. The probes run in a
fresh interpreter, as the worker does, so what they see is what a real start
imports.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from camstream_worker.pool import ipc
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.sources.policy import SourcePolicy

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
watched = ("av", "prometheus_client", "aiohttp", "jwt", "multiprocessing.resource_tracker")
print("LOADED", " ".join(sorted(m for m in watched if m in sys.modules)))
"""


def _loaded(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("LOADED"))
    return set(line.split()[1:])


def test_the_standalone_front_does_not_load_pyav() -> None:
    # PyAV is ~7 MB of private heap plus its libraries' private pages; the
    # front never touches a packet (a clip download imports it when asked).
    loaded = _loaded("camstream_worker.app.standalone")
    assert "aiohttp" in loaded  # the probe sees the front's real imports
    assert "av" not in loaded, loaded


def test_an_engine_process_loads_neither_prometheus_nor_the_http_stack() -> None:
    # Engines serve no /metrics and no HTTP: the front does.
    loaded = _loaded("camstream_worker.pool.child")
    assert "av" in loaded  # the probe sees the engine's real imports
    assert not loaded & {"prometheus_client", "aiohttp", "jwt"}, loaded


def test_the_pool_needs_no_resource_tracker() -> None:
    assert "multiprocessing.resource_tracker" not in _loaded("camstream_worker.pool.sharded")


def test_the_channels_carry_the_settings_then_requests_to_the_child_ends() -> None:
    (control, connections), (child_control, child_connections) = ipc.channels()
    try:
        assert child_control.get_inheritable() and child_connections.get_inheritable()
        assert not control.closed and connections.get_inheritable() is False
        # The child rebuilds its ends from the bare descriptors it inherits.
        pipe, sock = ipc.child_ends(child_control.detach(), child_connections.detach())
        settings = ipc.Settings(
            index=1,
            hls_root="/srv/hls",
            log_level=20,
            sources=SourcePolicy(),
            rtmp_limits=Limits(),
            recording_spool=None,
        )
        control.send(settings)
        control.send((ipc.CLOSE, 7))
        assert pipe.recv() == settings
        assert pipe.recv() == (ipc.CLOSE, 7)
        pipe.send((ipc.DONE, 7))
        assert control.recv() == (ipc.DONE, 7)
        assert pickle.loads(pickle.dumps(settings)) == settings
        pipe.close()
        sock.close()
    finally:
        control.close()
        connections.close()
