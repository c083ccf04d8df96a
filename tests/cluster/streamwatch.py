"""What happens to CameraStreams' status, as it happens: a watch in a thread.

Who calls this: the churn suite's clock and outage scenarios, to time a
failover without polling. A worker that crashes and restarts in a second or
two takes its partitions back a few seconds later, so "every victim stream
Live elsewhere at once" may hold for less than a polling interval; the watch
sees each stream's own moment.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from .conftest import Cluster
from .kubeapi import ApiError, KubeClient

STREAMS = "/apis/camstream.io/v1alpha1/namespaces/{ns}/camerastreams"


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the watch delivered it
    name: str
    worker: str | None
    phase: str | None


class StreamStatusWatch:
    """Records every (worker, phase) a stream's status shows, with the time it was seen."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self._client = KubeClient.from_kubeconfig(cluster.kubeconfig)
        self._path = STREAMS.format(ns=ns)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._conn: http.client.HTTPSConnection | None = None
        self._thread = threading.Thread(target=self._run, name="stream-status-watch", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=10)

    def _record(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        seen = Seen(time.monotonic(), obj["metadata"]["name"], status.get("worker"),
                    status.get("phase"))  # fmt: skip
        with self._lock:
            self.seen.append(seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self._client.get(self._path)
                version = listing["metadata"]["resourceVersion"]
                for item in listing["items"]:
                    self._record(item)
                for event in self._client.watch(self._path, version, self._set_conn):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"])
            except (ApiError, OSError, ValueError):
                self._stop.wait(0.5)  # the API server is down or restarting: try again

    def _set_conn(self, conn: http.client.HTTPSConnection) -> None:
        self._conn = conn

    def first_time(
        self, names: Iterable[str], since: float, when: Callable[[Seen], bool]
    ) -> dict[str, float]:
        """For each stream, the first moment after `since` its status satisfied `when`."""
        wanted = set(names)
        out: dict[str, float] = {}
        with self._lock:
            for s in self.seen:
                if s.at >= since and s.name in wanted and s.name not in out and when(s):
                    out[s.name] = s.at
        return out

    def wait_each(
        self,
        names: Iterable[str],
        since: float,
        when: Callable[[Seen], bool],
        timeout: float,
        what: str,
    ) -> float:
        """Seconds from `since` until every stream in `names` had satisfied `when` once."""
        names = list(names)
        deadline = time.monotonic() + timeout
        while True:
            got = self.first_time(names, since, when)
            if len(got) == len(names):
                return max(got.values(), default=since) - since
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(got))
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}: {missing}")
            time.sleep(0.1)
