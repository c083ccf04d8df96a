"""One pod's network path to the API server, which a test can cut and restore.

Who calls this: nodeagent.py, when started with `api_links=True`, points each
pod's kubeconfig at its own `ApiLink` (a loopback TCP proxy in front of the
kube-apiserver) instead of at the API server itself; tests reach it through
`NodeAgent.api_link(pod, namespace)`.

`cut()` is a link that went away while everything else stays up: open
connections are reset and new ones refused, for this pod only (its cameras,
peers and viewers still reach it, and the node agent still probes it and
posts its status, as a kubelet on a healthy node would). `restore()` listens
on the same port again. TLS passes through untouched: the pod still talks to
the API server's own certificate at 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Self

__all__ = ["ApiLink"]

LOOPBACK = "127.0.0.1"


class ApiLink:
    """A TCP proxy 127.0.0.1:<port> → the API server; `cut()` / `restore()`."""

    def __init__(self, upstream: tuple[str, int], name: str = "") -> None:
        self.upstream = upstream
        self.name = name
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self.cuts = 0
        self._closed = False
        self._serve(self._listener)

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, set()
            self.cuts += 1
        if listener is not None:
            # shutdown first: it stops the listening socket and wakes the thread
            # blocked in accept(); close() alone leaves it listening until then.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in conns:
            _reset(sock)

    def restore(self) -> None:
        """Listen again on the same port."""
        with self._lock:
            if self._listener is not None or self._closed:
                return
            self._listener = socket.create_server((LOOPBACK, self.port))
            listener = self._listener
        self._serve(listener)

    def close(self) -> None:
        self._closed = True
        self.cut()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(
            target=self._accept, args=(listener,), name=f"apilink-{self.name}", daemon=True
        ).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                upstream = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                _reset(client)  # the API server itself is down: as a refused connection
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while we connected
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            splice(source, sink)
        finally:
            with self._lock:  # the set a cut has not taken yet
                self._open.discard(source)
                self._open.discard(sink)


def splice(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction; when either side ends, end both (a reset, as for a dead pod).

    Shared with services.py's Service stand-ins."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _reset(sock: socket.socket) -> None:
    """End a connection at once, with RST (linger 0), as a link that went away.

    shutdown() first: another thread may be blocked in recv() on it (a watch
    waiting for its next event), and close() alone would leave the kernel's
    socket, and the connection, alive until that recv returned.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
