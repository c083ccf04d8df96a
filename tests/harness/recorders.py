"""Loopback servers that play the attacker's (or the bystander's) side of a source URL.

Imported by tests/security: a `Recorder` stands where a stream author would
point a worker they want to abuse (an internal service, a host of their own
that collects credentials) and records every connection and request head it
gets, so a test can assert that nothing arrived, and a `MediaSite` is an
ordinary HTTP server whose paths the author controls: media, a redirect, a
playlist naming segments elsewhere, an HTML page, nothing (404).

Both bind loopback addresses only (127.0.0.0/8; a second address such as
127.0.0.2 stands for "another host"), on a free port, in a thread of their own.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Self


def loopback_port(host: str) -> int:
    if not host.startswith("127."):
        raise ValueError(f"tests bind loopback addresses only, not {host}")
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Recorder:
    """Accepts TCP connections on `host`, keeps the first bytes of each, answers `reply`."""

    def __init__(self, host: str = "127.0.0.2", reply: bytes = b"") -> None:
        self.host = host
        self.reply = reply
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, loopback_port(host)))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.heads: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.heads)

    def received(self) -> bytes:
        with self._lock:
            return b"\n".join(self.heads)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._record, args=(conn,), daemon=True).start()

    def _record(self, conn: socket.socket) -> None:
        with self._lock:
            index = len(self.heads)
            self.heads.append(b"")
        with conn:
            conn.settimeout(3)
            data = b""
            try:
                while len(data) < 8192 and b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if self.reply:
                    conn.sendall(self.reply)
            except OSError:
                pass
        with self._lock:
            self.heads[index] = data


class MediaSite:
    """An HTTP server on 127.0.0.1 serving `folder`, plus `redirects` (path -> location).

    With `tls` (a folder for a self-signed certificate, made here with
    openssl), it serves HTTPS.
    """

    def __init__(
        self, folder: Path, redirects: dict[str, str] | None = None, *, tls: Path | None = None
    ) -> None:
        self.folder = folder
        self.redirects = redirects or {}
        self.requests: list[str] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(site.folder), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                site.requests.append(self.path)
                location = site.redirects.get(self.path)
                if location is not None:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self_signed(tls))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def self_signed(folder: Path) -> tuple[str, str]:
    """(certificate, key) files of a throwaway certificate for 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)
