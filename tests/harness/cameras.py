"""Real cameras for tests and benchmarks: an RTSP server, RTMP publishers, garbage.

Imported by the worker's media tests, the end-to-end suite and ``bench/`` to
stand up the sources a worker ingests from. Every part is a real process or
socket bound to loopback:

- ``RtspCamera``: GStreamer's RTSP server (the demo's camera,
  ``camstream_worker/testcams/rtsp_camera.py``, run by Debian's
  ``/usr/bin/python3``) serving live H.264/H.265/AAC test streams, optionally
  behind Digest or Basic auth.
- ``RtmpPusher``: ``ffmpeg -re ... -f flv rtmp://...``, from a test pattern
  or, cheaply, from a clip made once by ``make_clip`` and looped with
  ``-c copy``; or, for H.265 (enhanced RTMP, which Debian's FFmpeg 5.1
  cannot write) and for cameras that reconnect when dropped, the same loop
  done by ``pyav_push.py`` with the venv's PyAV.
- ``RtmpFanout``: one PyAV process publishing one clip to many RTMP URLs
  (tens of cameras for a benchmark or the churn suite at a few % of a core).
- ``GarbageClient``: a TCP client that sends random bytes, half handshakes or
  a slowloris trickle, for the "garbage on the port" faults;
  ``BlackHoleServer``: a listener that accepts and never answers (a hung camera).

Processes run in their own session (process group) and are stopped by that
group only: ``stop()`` sends SIGTERM then SIGKILL, ``kill()`` is an abrupt
crash, ``pause()``/``resume()`` (SIGSTOP/SIGCONT) make a camera stall without
closing its socket. Secrets (passwords, stream keys) are redacted from every
message this module raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

from camstream_worker.testcams import launch

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
_PASSWORD_ENV = "CAMSTREAM_HARNESS_RTSP_PASSWORD"


class HarnessError(RuntimeError):
    """A harness part could not start or misbehaved (not a failure of the code under test)."""


def cache_dir() -> Path:
    """Where encoded clips and npm packages are kept between runs."""
    root = Path(os.environ.get("CAMSTREAM_CACHE", REPO_ROOT / ".cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago on ``host`` (loopback only).

    Prefer letting the server bind port 0 where it can (``RtspCamera`` does);
    this is for servers that need the number up front, like ``ffmpeg -listen``.
    """
    _require_loopback(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 15.0) -> None:
    """Poll until something accepts TCP connections on ``host:port``.

    This connects; for one-shot listeners use ``wait_for_listen``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def is_listening(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP socket listens on ``host:port``, without connecting to it.

    One-shot listeners (``ffmpeg -listen 1``, PyAV's RTMP listen) take the
    first connection as their client, so a connect probe would use them up;
    the kernel's socket table (``/proc/net/tcp``) answers without touching them.
    """
    want_port = f"{port:04X}"
    want_host = "".join(f"{int(b):02X}" for b in reversed(host.split(".")))
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError as exc:
        raise HarnessError(f"cannot read /proc/net/tcp: {exc}") from exc
    for line in lines:
        fields = line.split()
        addr, _, lport = fields[1].partition(":")
        if lport == want_port and fields[3] == "0A" and addr in (want_host, "00000000"):
            return True
    return False


def wait_for_listen(port: int, host: str = LOOPBACK, timeout: float = 15.0) -> None:
    """Poll ``is_listening`` (no connection made) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not is_listening(port, host):
        if time.monotonic() > deadline:
            raise HarnessError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def _require_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise HarnessError(f"harness targets must be loopback (127.0.0.0/8), not {host!r}")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


class _Process:
    """One child process in its own process group, with its stderr kept in a log file."""

    name = "process"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix=f"camstream-{self.name}-"))
        self.log_path = self._logdir / "stderr.log"
        self._secrets: list[str] = []
        self._group_done = False

    # -- subclass hooks -------------------------------------------------
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _wait_ready(self) -> None:
        """Block until the process serves; raise HarnessError if it died."""

    def _reads_stdout(self) -> bool:
        """Whether ``_wait_ready`` reads a ready line from the child's stdout."""
        return False

    # -- lifecycle ------------------------------------------------------
    def start(self) -> Self:
        if self.running:
            raise HarnessError(f"{self.name} already running (pid {self.pid})")
        log = open(self.log_path, "ab")  # handed to the child, closed here after the fork
        try:
            self._group_done = False
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                # A pipe nobody reads would block a chatty child once it fills.
                stdout=subprocess.PIPE if self._reads_stdout() else subprocess.DEVNULL,
                stderr=log,
                env=self._env(),
                # Own session: teardown signals this group only, never ours.
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it if it lingers; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(timeout)
        # Reap strays the child left in its group (ffmpeg, gst helpers).
        self._signal_group(signal.SIGKILL)
        self._finish()
        return proc.returncode

    def kill(self) -> int | None:
        """Crash the camera: SIGKILL the whole group, no goodbye on the wire."""
        proc = self._proc
        if proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
        self._finish()
        return proc.returncode

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): its sockets stay open but no data flows."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def _signal_group(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or self._group_done:
            return
        # The group id is the pid of the child we started (start_new_session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _finish(self) -> None:
        # The group has been SIGKILLed and its leader reaped: never signal
        # that group id again, a later process could reuse the number.
        self._group_done = True
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()

    # -- introspection --------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote to stderr, secrets redacted."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return _redact("\n".join(text.splitlines()[-lines:]), self._secrets)

    def cleanup(self) -> None:
        """Stop and delete the log directory."""
        self.stop()
        shutil.rmtree(self._logdir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


MountSpec = Mapping[str, str] | Sequence[tuple[str, str]] | Sequence[str]


class RtspCamera(_Process):
    """GStreamer's RTSP server serving live test streams on loopback.

    ``mounts`` maps a path to a kind: ``h264+aac`` (default), ``h264``,
    ``h265``, ``h265+aac`` or ``mjpeg`` (a codec HLS cannot carry); a bare
    path means ``h264+aac``. With ``port=0``
    the server picks a free port at first start and keeps it across
    ``restart()``, so a "camera rebooted" test sees the same address.
    """

    name = "rtsp"

    def __init__(
        self,
        port: int = 0,
        mounts: MountSpec = ("/cam1",),
        *,
        user: str | None = None,
        password: str | None = None,
        auth: str = "digest",
        size: str = "640x360",
        fps: int = 25,
        bitrate_kbps: int = 1000,
        gop_seconds: float = 2.0,
        bind: str = LOOPBACK,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        _require_loopback(bind)
        if (user is None) != (password is None):
            raise HarnessError("user and password go together")
        self.port = port
        self.bind = bind
        self.mounts = _normalise_mounts(mounts)
        self.user = user
        self._password = password
        self._secrets = [password] if password else []
        self.auth = auth
        self.size = size
        self.fps = fps
        self.bitrate_kbps = bitrate_kbps
        self.gop_seconds = gop_seconds
        self.ready_timeout = ready_timeout

    def _argv(self) -> list[str]:
        argv = launch.rtsp_camera(
            self.mounts,
            port=self.port,
            bind=self.bind,
            size=self.size,
            fps=self.fps,
            bitrate_kbps=self.bitrate_kbps,
            gop_seconds=self.gop_seconds,
        )
        if self.user is not None:
            # The password travels in the environment, never on a command line.
            argv += ["--user", self.user, "--password-env", _PASSWORD_ENV, "--auth", self.auth]
        return argv

    def _env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        if self._password is not None:
            env[_PASSWORD_ENV] = self._password
        return env

    def _reads_stdout(self) -> bool:
        return True

    def _wait_ready(self) -> None:
        line = _read_line(self._proc, self.ready_timeout)
        port = launch.ready_port(line)
        if port is None:
            raise HarnessError(
                f"RTSP camera did not start (exit {self.returncode}): {line!r}\n{self.log_tail()}"
            )
        self.port = port

    def url(self, mount: str | None = None, *, credentials: bool = False) -> str:
        """``rtsp://127.0.0.1:PORT/mount``; with ``credentials`` the user:password is embedded."""
        mount = mount or next(iter(self.mounts))
        auth = ""
        if credentials and self.user is not None and self._password is not None:
            auth = f"{quote(self.user, safe='')}:{quote(self._password, safe='')}@"
        return f"rtsp://{auth}{self.bind}:{self.port}{mount}"


def _normalise_mounts(mounts: MountSpec) -> dict[str, str]:
    if isinstance(mounts, Mapping):
        items = list(mounts.items())
    else:
        items = [(m, "h264+aac") if isinstance(m, str) else m for m in mounts]
    if not items:
        raise HarnessError("an RTSP camera needs at least one mount")
    return dict(items)


def _read_line(proc: subprocess.Popen[bytes] | None, timeout: float) -> str:
    """Read one stdout line from ``proc`` within ``timeout`` (empty if it exits or times out)."""
    if proc is None or proc.stdout is None:
        return ""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.decode(errors="replace").split("\n", 1)[0].strip()


# -- RTMP ---------------------------------------------------------------------


def make_clip(
    path: Path | str | None = None,
    seconds: float = 10.0,
    *,
    codec: str = "h264",
    video_only: bool = False,
    bitrate_kbps: int = 1000,
    gop_seconds: float = 2.0,
    fps: int = 25,
    size: str = "640x360",
    container: str = "flv",
) -> Path:
    """Encode a test clip once and return its path (cached by its parameters).

    The clip is a whole number of GOPs with closed GOPs and no scene-cut
    key frames, so ``-stream_loop -1 -c copy`` keeps the key-frame cadence
    (and hence the HLS segment cadence) exact across the loop. Made atomically
    (temp file + rename): parallel tests may ask for the same clip.
    """
    gop = max(1, round(fps * gop_seconds))
    frames = max(gop, round(seconds * fps / gop) * gop)
    duration = frames / fps
    if path is None:
        key = f"v2-{codec}-{video_only}-{bitrate_kbps}-{gop}-{fps}-{size}-{frames}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        clips = cache_dir() / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        path = clips / f"clip-{codec}-{size}-{fps}fps-{digest}.{container}"
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    argv += _test_sources(size, fps, video_only)
    argv += _video_encoder(codec, bitrate_kbps, gop, fps, preset="medium")
    if not video_only:
        argv += ["-c:a", "aac", "-b:a", "96k"]
    # One output -t for all streams: a per-stream limit (-frames:v) ends the
    # whole file early and leaves the audio seconds short of the video.
    argv += ["-t", f"{duration:.3f}"]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fmt = {"ts": "mpegts", "mkv": "matroska"}.get(container, container)
    argv += ["-f", fmt, str(tmp)]
    result = subprocess.run(argv, capture_output=True, timeout=300, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"clip encoding failed: {result.stderr.decode(errors='replace')[-800:]}")
    os.replace(tmp, path)
    return path


def _test_sources(size: str, fps: int, video_only: bool) -> list[str]:
    argv = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if not video_only:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    return argv


def _video_encoder(codec: str, bitrate_kbps: int, gop: int, fps: int, preset: str) -> list[str]:
    rate = ["-b:v", f"{bitrate_kbps}k", "-maxrate", f"{bitrate_kbps}k"]
    rate += ["-bufsize", f"{2 * bitrate_kbps}k"]
    gop_args = ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    if codec == "h264":
        return ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", *gop_args, *rate]
    if codec == "h265":
        x265 = f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"
        return ["-c:v", "libx265", "-preset", preset, "-x265-params", x265, *rate]
    if codec == "flv1":
        # Sorenson Spark: a real codec RTMP carries that HLS cannot, for
        # "unsupported codec" tests.
        return ["-c:v", "flv", "-g", str(gop), *rate[:2]]
    raise HarnessError(f"unknown codec {codec!r} (h264, h265, flv1)")


class RtmpPusher(_Process):
    """An RTMP camera publishing FLV to ``url`` in real time.

    With ``clip`` (a path, or ``True`` to use ``make_clip`` with this
    pusher's parameters) it loops a pre-encoded clip without re-encoding and
    costs little CPU; without, it encodes a live test pattern.

    Two engines: ``ffmpeg`` (the Debian CLI, ``ffmpeg -re ... -f flv``) and
    ``pyav`` (pyav_push.py with the venv's PyAV, whose FFmpeg 8 writes
    enhanced-RTMP HEVC that Debian 12's FFmpeg 5.1 cannot, and which can
    reconnect like a real camera when the receiver drops it). ``auto`` picks
    ``pyav`` for ``codec="h265"`` or ``reconnect=True`` (always from a clip,
    encoded once into MPEG-TS) and ``ffmpeg`` otherwise. The URL's stream key
    is redacted from messages.
    """

    name = "rtmp"

    def __init__(
        self,
        url: str,
        *,
        clip: Path | str | bool | None = None,
        video_only: bool = False,
        codec: str = "h264",
        bitrate_kbps: int = 1000,
        gop_seconds: float = 2.0,
        fps: int = 25,
        size: str = "640x360",
        engine: str = "auto",
        startup_check: float = 0.5,
        connect_timeout: float = 20.0,
        reconnect: bool = False,
    ) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.connected = 0  # publishers connected (pyav engine)
        self.url = url
        self.urls = [url]
        self._secrets = _rtmp_secrets(url)
        self.video_only = video_only
        self.codec = codec
        self.bitrate_kbps = bitrate_kbps
        self.gop_seconds = gop_seconds
        self.fps = fps
        self.size = size
        self.startup_check = startup_check
        if engine == "auto":
            engine = "pyav" if codec == "h265" or reconnect else "ffmpeg"
        if engine not in ("ffmpeg", "pyav"):
            raise HarnessError(f"unknown engine {engine!r} (ffmpeg, pyav)")
        self.engine = engine
        if clip is True or (clip is None and engine == "pyav"):
            clip = make_clip(
                codec=codec,
                video_only=video_only,
                bitrate_kbps=bitrate_kbps,
                gop_seconds=gop_seconds,
                fps=fps,
                size=size,
                # FFmpeg 5.1 cannot put HEVC in FLV; MPEG-TS holds every codec.
                container="ts" if engine == "pyav" else "flv",
            )
        self.clip = Path(clip) if clip else None

    def _argv(self) -> list[str]:
        if self.engine == "pyav":
            assert self.clip is not None
            argv = [sys.executable, "-m", "tests.harness.pyav_push", str(self.clip)]
            return argv + (["--reconnect"] if self.reconnect else [])
        argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning"]
        if self.clip is not None:
            argv += ["-re", "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy"]
        else:
            gop = max(1, round(self.fps * self.gop_seconds))
            # -re on each lavfi input paces it at real time like a camera.
            for arg in _test_sources(self.size, self.fps, self.video_only):
                argv += ["-re", arg] if arg == "-f" else [arg]
            argv += _video_encoder(self.codec, self.bitrate_kbps, gop, self.fps, "veryfast")
            argv += ["-tune", "zerolatency"] if self.codec == "h264" else []
            if not self.video_only:
                argv += ["-c:a", "aac", "-b:a", "96k"]
        if self.video_only:
            argv += ["-an"]
        argv += ["-f", "flv", self.url]
        return argv

    def _env(self) -> dict[str, str] | None:
        # The URLs (with their keys) go to the PyAV pusher by environment, not argv.
        env = dict(os.environ, CAMSTREAM_HARNESS_RTMP_URL="\n".join(self.urls))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def _reads_stdout(self) -> bool:
        return self.engine == "pyav"

    def _wait_ready(self) -> None:
        if self.engine == "pyav":
            line = _read_line(self._proc, self.connect_timeout)
            # A reconnecting camera keeps trying: none connected yet is no failure.
            none_ok = self.reconnect
            if not line.startswith("CONNECTED ") or (line == "CONNECTED 0" and not none_ok):
                raise HarnessError(
                    f"RTMP pusher did not connect (exit {self.returncode}): {line!r}\n"
                    f"{self.log_tail()}"
                )
            self.connected = int(line.split()[1])
            return
        # ffmpeg has no "connected" signal; an immediate exit (refused
        # connection, bad codec) shows within a fraction of a second.
        deadline = time.monotonic() + self.startup_check
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError(
                    f"RTMP pusher exited at once (code {self.returncode}):\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def reconnects(self) -> int:
        """Times a publisher connected again after it was dropped (pyav engine, --reconnect),
        counted from the cameras' own log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        # Counted as occurrences, not lines: the publishers' threads print
        # concurrently, and two lines may come out run together.
        return text.count(": reconnected")

    def __repr__(self) -> str:
        urls = [_redact(u, self._secrets) for u in self.urls]
        return f"{type(self).__name__}({urls!r}, pid={self.pid})"


def _rtmp_secrets(url: str) -> list[str]:
    """Check an RTMP URL is loopback and return its secret parts (stream key, query values)."""
    parts = urlsplit(url)
    if parts.scheme != "rtmp" or not parts.hostname:
        raise HarnessError("RTMP publishers need an rtmp://127.x.x.x:PORT/app/key URL")
    _require_loopback(parts.hostname)
    secrets = [p for p in parts.path.split("/")[2:] if p]
    return secrets + [kv.partition("=")[2] for kv in parts.query.split("&") if "=" in kv]


class RtmpFanout(RtmpPusher):
    """Many RTMP cameras in one process: one clip demuxed once, published to every URL.

    For benchmarks and churn tests that need tens of cameras without tens of
    processes (PyAV engine; each publisher is its own RTMP connection with its
    own key). ``connected`` tells how many publishers connected at start.
    """

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise HarnessError("RtmpFanout needs at least one URL")
        kwargs["engine"] = "pyav"
        super().__init__(urls[0], **kwargs)
        self.urls = list(urls)
        self._secrets = [s for u in self.urls for s in _rtmp_secrets(u)]


# -- garbage ------------------------------------------------------------------


class GarbageClient:
    """A misbehaving TCP client for fault tests against a listening port.

    Each method opens a fresh connection, does one bad thing and reports
    whether the server closed the connection on us (``True``) or just left
    it hanging until ``hold`` seconds passed (``False``).
    """

    def __init__(self, port: int, host: str = LOOPBACK, *, seed: int = 0) -> None:
        _require_loopback(host)
        self.host = host
        self.port = port
        self._rng = random.Random(seed)

    def random_bytes(self, nbytes: int = 65536, hold: float = 1.0) -> bool:
        """Connect and send ``nbytes`` of noise."""
        return self._session(self._rng.randbytes(nbytes), hold)

    def half_rtmp_handshake(self, hold: float = 2.0) -> bool:
        """Send RTMP C0+C1 and then nothing: a publisher that hangs mid-handshake."""
        c1 = bytes(8) + self._rng.randbytes(1528)
        return self._session(b"\x03" + c1, hold)

    def bad_rtmp_version(self, hold: float = 1.0) -> bool:
        """C0 with an unknown protocol version, then noise."""
        return self._session(b"\x42" + self._rng.randbytes(1536), hold)

    def idle(self, hold: float = 2.0) -> bool:
        """Connect and say nothing."""
        return self._session(b"", hold)

    def http_request(self, hold: float = 1.0) -> bool:
        """The wrong protocol: an HTTP GET on a media port."""
        return self._session(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hold)

    def slowloris(self, seconds: float = 5.0, interval: float = 0.5) -> bool:
        """Trickle a valid RTMP C0+C1 one byte per ``interval``: never finishes, never idle.

        True if the server hung up within ``seconds`` (as a guarded server should).
        """
        c1 = b"\x03" + bytes(8) + self._rng.randbytes(1528)
        deadline = time.monotonic() + seconds
        with socket.create_connection((self.host, self.port), timeout=5.0) as s:
            for byte in c1:
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if _closed_within(s, min(interval, left)):
                    return True
        return False

    def _session(self, payload: bytes, hold: float) -> bool:
        with socket.create_connection((self.host, self.port), timeout=5.0) as s:
            try:
                if payload:
                    s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                return True
            return _closed_within(s, hold)


class BlackHoleServer:
    """A TCP listener on loopback that accepts connections and never answers.

    Stands in for a hung camera (RTSP or HTTP) that takes the connection and
    then says nothing, to test a reader's timeouts. ``accepted`` counts
    connections; all are closed on ``stop()``.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        _require_loopback(host)
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="black-hole", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _closed_within(s: socket.socket, hold: float) -> bool:
    """Drain what the server sends until it closes (True) or ``hold`` passes (False)."""
    deadline = time.monotonic() + hold
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
