"""The cuttable path between a pod and the API server (tests/cluster/apilink.py)."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from .apilink import ApiLink


def _echo_server() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _echo(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):
        while data := conn.recv(1024):
            conn.sendall(data)


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(1024)


def test_cut_resets_open_connections_refuses_new_ones_and_restore_reopens() -> None:
    server = _echo_server()
    with ApiLink(server.getsockname()) as link:
        conn = socket.create_connection(("127.0.0.1", link.port), timeout=5)
        assert _roundtrip(conn, b"hello") == b"hello"
        link.cut()
        # An idle connection (a watch waiting for its next event) ends at once:
        # end of stream or a reset, not silence.
        conn.settimeout(2.0)
        try:
            assert conn.recv(1024) == b""
        except ConnectionResetError:
            pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", link.port), timeout=5)
        link.restore()
        fresh = socket.create_connection(("127.0.0.1", link.port), timeout=5)
        assert _roundtrip(fresh, b"back") == b"back"
        fresh.close()
        conn.close()
    server.close()
