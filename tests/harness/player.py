"""A real HLS player: hls.js in headless Debian Chromium, driven over DevTools.

Used by the worker's player test, the end-to-end suite (playback through a
handoff) and demos: ``play(url, seconds)`` opens a page that plays HLS with
hls.js, watches the ``<video>`` element for ``seconds`` and returns a
``PlayResult`` (how far playback got, stalls, errors, a screenshot kept under
``artifacts/``).

``url`` may be:

- a playlist (``http://127.0.0.1:PORT/.../index.m3u8``): played by the
  harness's own page (``player_page.html``) served with hls.js from the npm
  registry (``scripts/install-media-deps.sh`` installs it; never a CDN);
- a local playlist path: its directory is served on loopback first;
- any other http page (the worker's own player page): opened as it is.

In every case a script injected before the page runs records the media
events of any ``<video>`` (capture listeners on the document: media events do
not bubble, but capture sees them) and the ERROR events of any hls.js
instance (by wrapping ``Hls.prototype.trigger`` when the page defines
``Hls``), so the worker's page is measured the same way as ours.

Chromium is driven with its DevTools protocol over a websocket (aiohttp), so
no browser-automation package or browser download is needed. ``play`` is
synchronous (it runs its own event loop in a thread); inside an async test
whose event loop serves the stream, use ``await play_async(...)`` instead, or
the blocked loop could not answer the player.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import http.server
import itertools
import json
import mimetypes
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp

from tests.harness.cameras import LOOPBACK, REPO_ROOT, HarnessError, _Process, cache_dir

CHROMIUM = os.environ.get("CAMSTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CAMSTREAM_ARTIFACTS", REPO_ROOT / "artifacts"))
PAGE = Path(__file__).with_name("player_page.html")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    # Tests play muted video without a user gesture; keep it from being paused.
    "--autoplay-policy=no-user-gesture-required",
    # A tab in the background must not be throttled while we measure it.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    # play_many_async opens one tab per stream, all but one in the background,
    # where Chromium suspends a video-only player (a camera without audio)
    # after a few seconds: it would never start.
    "--disable-background-media-suspend",
    "--window-size=800,450",
)

# Runs in every page before its own scripts (Page.addScriptToEvaluateOnNewDocument).
_HOOK = r"""
(() => {
  const s = window.__camstream = {events: [], errors: [], waiting: 0, playingAt: null, trace: []};
  const now = () => performance.now() / 1000;
  // What hls.js was given and did, for a failure's report (bounded): each
  // playlist load, each fragment buffered and, at every `waiting`, what was buffered.
  const note = (entry) => { if (s.trace.length < 3000) s.trace.push([now(), ...entry]); };
  const ranges = (v) => Array.from({length: v.buffered.length},
                                   (_, i) => [v.buffered.start(i), v.buffered.end(i)]);
  for (const type of ["waiting", "playing", "stalled", "error", "ended", "pause", "seeking"]) {
    document.addEventListener(type, (ev) => {
      if (!(ev.target instanceof HTMLMediaElement)) return;
      const t = ev.target.currentTime;
      if (s.events.length < 500) s.events.push([now(), type, t]);
      if (type === "playing" && s.playingAt === null) s.playingAt = now();
      // hls.js may seek to its start position right after the first `playing`; the
      // `waiting` that seek causes (10 ms in a CI run) is still the start, not a stall.
      if (type === "seeking") s.seekingAt = now();
      if (type === "playing") s.seekingAt = null;
      const startSeek = s.seekingAt != null && s.seekingAt - s.playingAt < 1.0;
      if (type === "waiting" && s.playingAt !== null && !startSeek) s.waiting += 1;
      if (type === "waiting") note(["waiting", t, ranges(ev.target)]);
      if (type === "error") {
        const e = ev.target.error;
        s.errors.push({source: "media", fatal: true,
                       details: e ? ("code " + e.code + " " + (e.message || "")) : "unknown"});
      }
    }, true);
  }
  const wrap = (Hls) => {
    if (!Hls || !Hls.prototype || Hls.prototype.__camstreamWrapped) return;
    const trigger = Hls.prototype.trigger;
    Hls.prototype.trigger = function (event, data) {
      if (event === "hlsLevelLoaded" && data && data.details) {
        const d = data.details, f = d.fragments;
        note(["playlist", d.startSN, d.endSN, f.length ? f[0].start : null,
              f.length ? f[f.length - 1].start + f[f.length - 1].duration : null,
              f.length ? f[0].cc : null, f.length ? f[f.length - 1].cc : null,
              !!d.alignedSliding, d.updated]);
      } else if (event === "hlsFragBuffered" && data && data.frag) {
        const f = data.frag;
        note(["buffered", f.sn, f.cc, f.start, f.duration]);
      } else if (event === "hlsError" && data && !data.fatal) {
        note(["error", data.details]);
      }
      if (event === "hlsError" && s.errors.length < 200) {
        s.errors.push({source: "hls.js", fatal: !!(data && data.fatal),
                       details: data ? (data.type + "/" + data.details) : "unknown"});
      }
      return trigger.apply(this, arguments);
    };
    Hls.prototype.__camstreamWrapped = true;
  };
  let current;
  Object.defineProperty(window, "Hls", {
    configurable: true,
    get() { return current; },
    set(v) { current = v; try { wrap(v); } catch (e) {} },
  });
})();
"""

_STATE_JS = r"""
(() => {
  const v = document.querySelector("video");
  const s = window.__camstream || {};
  return {
    hasVideo: !!v,
    currentTime: v ? v.currentTime : 0,
    paused: v ? v.paused : true,
    readyState: v ? v.readyState : 0,
    width: v ? v.videoWidth : 0,
    height: v ? v.videoHeight : 0,
    waiting: s.waiting || 0,
    waitedAt: (s.events || [])
      .filter((e) => e[1] === "waiting" && s.playingAt !== null && e[0] >= s.playingAt)
      .map((e) => e[2]),
    playingAt: s.playingAt === undefined ? null : s.playingAt,
    errors: s.errors || [],
    now: performance.now() / 1000,
  };
})()
"""


@dataclass(frozen=True)
class PlayResult:
    """What the player saw.

    ``stalls`` counts ``waiting`` events after playback first started (the
    initial buffering is not a stall). ``longest_freeze`` is the longest wall
    time, after the start, during which ``currentTime`` did not advance.
    """

    url: str
    current_time: float  # video.currentTime at the end
    played: float  # how far currentTime advanced during the watch window
    started: bool
    startup_seconds: float | None  # navigation to first advancing frame
    stalls: int
    longest_freeze: float
    errors: tuple[str, ...]  # every hls.js / media / page error, "[fatal] source: details"
    fatal_errors: tuple[str, ...]
    video_size: tuple[int, int]
    screenshot_path: Path | None
    samples: tuple[tuple[float, float], ...]  # (seconds since navigation, currentTime)
    probe: Any = None  # the value of the caller's `probe` expression at the end, if any
    # currentTime at each counted `waiting` (of the first 500 media events), to place them
    waited_at: tuple[float, ...] = ()


def hlsjs_path() -> Path:
    """hls.min.js installed from the npm registry (see scripts/install-media-deps.sh)."""
    candidates: list[str | Path] = [
        os.environ.get("CAMSTREAM_HLSJS", ""),
        # The copy the worker serves first (scripts/fetch-hlsjs.sh), so the
        # harness page and the worker's page play with the same hls.js.
        REPO_ROOT / "worker/camstream_worker/static/hls.min.js",
        cache_dir() / "npm-hlsjs/node_modules/hls.js/dist/hls.min.js",
        cache_dir() / "npm/node_modules/hls.js/dist/hls.min.js",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise HarnessError("hls.js is not installed: run scripts/install-media-deps.sh (npm hls.js@1)")


# -- a loopback file server for the page, hls.js and local HLS directories ----


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "camstream-harness"
    media_root: Path | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def translate_path(self, path: str) -> str:
        route = urlsplit(path).path
        if route == "/player.html":
            return str(PAGE)
        if route == "/hls.min.js":
            return str(hlsjs_path())
        if route.startswith("/media/") and self.media_root is not None:
            rel = Path(route[len("/media/") :])
            target = (self.media_root / rel).resolve()
            if self.media_root.resolve() in target.parents:
                return str(target)
        return "/nonexistent"

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        suffix = Path(path).suffix
        return (
            {
                ".m3u8": "application/vnd.apple.mpegurl",
                ".ts": "video/mp2t",
                ".m4s": "video/iso.segment",
                ".mp4": "video/mp4",
                ".js": "text/javascript",
                ".html": "text/html; charset=utf-8",
            }.get(suffix)
            or mimetypes.guess_type(str(path))[0]
            or "application/octet-stream"
        )

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        # A live playlist must never be cached; everything else here is tiny.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


class HarnessServer:
    """Serves ``/player.html``, ``/hls.min.js`` and, under ``/media/``, one directory."""

    def __init__(self, media_root: Path | str | None = None) -> None:
        root = Path(media_root) if media_root is not None else None
        handler = type("Handler", (_Handler,), {"media_root": root})
        self._httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def media_url(self, rel: str) -> str:
        return f"{self.base_url}/media/{quote(rel)}"

    def page_url(self, playlist_url: str) -> str:
        return f"{self.base_url}/player.html?src={quote(playlist_url, safe='')}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); later requests are refused."""
        if self._thread.is_alive():
            self._httpd.shutdown()  # blocks forever if serve_forever never ran
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- Chromium and the DevTools protocol ----------------------------------------


class Chromium(_Process):
    """Headless Chromium with a DevTools endpoint on loopback and a fresh profile."""

    name = "chromium"

    def __init__(self, ready_timeout: float = 40.0) -> None:
        super().__init__()
        self.ready_timeout = ready_timeout
        self.profile = self._logdir / "profile"
        self.devtools_port: int | None = None

    def _argv(self) -> list[str]:
        shutil.rmtree(self.profile, ignore_errors=True)
        return [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]

    def _wait_ready(self) -> None:
        # Chromium writes the port it bound into the profile once DevTools listens.
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError(f"chromium exited ({self.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.devtools_port = int(marker.read_text().splitlines()[0])
                return
            time.sleep(0.1)
        raise HarnessError(f"chromium DevTools not up after {self.ready_timeout}s")

    @property
    def http_base(self) -> str:
        return f"http://{LOOPBACK}:{self.devtools_port}"


class _Page:
    """One tab, spoken to over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.page_errors: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                det = data["params"]["exceptionDetails"]
                text = det.get("exception", {}).get("description") or det.get("text", "")
                self._note(f"page exception: {text}")
            elif data.get("method") == "Runtime.consoleAPICalled":
                if data["params"].get("type") == "error":
                    args = data["params"].get("args", [])
                    text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                    self._note(f"console error: {text}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(HarnessError("DevTools connection closed"))

    def _note(self, text: str) -> None:
        if len(self.page_errors) < 50:
            self.page_errors.append(text[:300])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        async with asyncio.timeout(30.0):
            reply = await fut
        if "error" in reply:
            raise HarnessError(f"DevTools {method} failed: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


async def _open_page(session: aiohttp.ClientSession, browser: Chromium) -> tuple[_Page, str]:
    async with session.put(f"{browser.http_base}/json/new?about:blank") as resp:
        target = await resp.json(content_type=None)
    ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
    return _Page(ws), str(target["id"])


def _is_playlist(url: str) -> bool:
    return urlsplit(url).path.endswith(".m3u8")


def _artifact_name(url: str) -> str:
    path = urlsplit(url).path.strip("/") or "page"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path)[-80:]


async def _play_on(
    session: aiohttp.ClientSession,
    browser: Chromium,
    page_url: str,
    seconds: float,
    startup_timeout: float,
    screenshot: Path | None,
    reported_url: str,
    probe: str | None = None,
    on_started: Callable[[], None] | None = None,
) -> PlayResult:
    page, target_id = await _open_page(session, browser)
    try:
        await page.call("Runtime.enable")
        await page.call("Page.enable")
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=_HOOK)
        t0 = time.monotonic()
        await page.call("Page.navigate", url=page_url)
        samples: list[tuple[float, float]] = []
        first_t: float | None = None
        start_ct = 0.0
        last_advance: float | None = None
        longest_freeze = 0.0
        state: dict[str, Any] = {}
        watch_end: float | None = None
        while True:
            now = time.monotonic()
            if watch_end is None and now - t0 > startup_timeout:
                break
            if watch_end is not None and now >= watch_end:
                break
            state = await page.evaluate(_STATE_JS) or {}
            ct = float(state.get("currentTime") or 0.0)
            now = time.monotonic()
            samples.append((now - t0, ct))
            if first_t is None and ct > 0 and not state.get("paused", True):
                first_t, start_ct, last_advance = now, ct, now
                watch_end = now + seconds
                if on_started is not None:
                    on_started()
            elif first_t is not None:
                prev = samples[-2][1] if len(samples) > 1 else ct
                if ct > prev:
                    last_advance = now
                assert last_advance is not None
                longest_freeze = max(longest_freeze, now - last_advance)
            if any(e.get("fatal") for e in state.get("errors", [])) and first_t is None:
                break  # a fatal error before the start: nothing will play
            await asyncio.sleep(0.25)
        probed = await page.evaluate(probe) if probe is not None else None
        shot = None
        if screenshot is not None:
            shot = await _screenshot(page, screenshot)
        raw_errors = list(state.get("errors", []))
        errors = tuple(
            f"{'fatal ' if e.get('fatal') else ''}{e.get('source')}: {e.get('details')}"
            for e in raw_errors
        ) + tuple(page.page_errors)
        fatal = tuple(e for e in errors if e.startswith("fatal "))
        current = float(state.get("currentTime") or 0.0)
        return PlayResult(
            url=reported_url,
            current_time=current,
            played=max(0.0, current - start_ct) if first_t is not None else 0.0,
            started=first_t is not None,
            startup_seconds=None if first_t is None else first_t - t0,
            stalls=int(state.get("waiting") or 0),
            longest_freeze=longest_freeze,
            errors=errors,
            fatal_errors=fatal,
            video_size=(int(state.get("width") or 0), int(state.get("height") or 0)),
            screenshot_path=shot,
            samples=tuple(samples),
            probe=probed,
            waited_at=tuple(float(t) for t in state.get("waitedAt") or ()),
        )
    finally:
        await page.close()
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{browser.http_base}/json/close/{target_id}"):
                pass


async def _screenshot(page: _Page, path: Path) -> Path | None:
    try:
        res = await page.call("Page.captureScreenshot", format="png")
    except (HarnessError, TimeoutError):
        return None
    await asyncio.to_thread(_write_file, path, base64.b64decode(res["data"]))
    return path


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _plan_pages(
    urls: Mapping[str, str], servers: list[HarnessServer]
) -> dict[str, tuple[str, str]]:
    """For each name: the page to open and the URL to report; starts servers as needed."""
    plans: dict[str, tuple[str, str]] = {}
    for name, url in urls.items():
        page_url, reported = url, url
        if not urlsplit(url).scheme:  # a local playlist path
            path = Path(url).resolve()
            server = HarnessServer(path.parent).start()
            servers.append(server)
            reported = str(path)
            page_url = server.page_url(server.media_url(path.name))
        elif _is_playlist(url):
            server = HarnessServer().start()
            servers.append(server)
            page_url = server.page_url(url)
        plans[name] = (page_url, reported)
    return plans


async def play_many_async(
    urls: Mapping[str, str],
    seconds: float,
    *,
    startup_timeout: float = 30.0,
    screenshots: bool = True,
    browser: Chromium | None = None,
    probe: str | None = None,
    on_started: Callable[[], None] | None = None,
) -> dict[str, PlayResult]:
    """Play several URLs at once, one tab each, in one Chromium.

    `probe`: a JavaScript expression evaluated in each page at the end (its
    JSON value is PlayResult.probe), for what a page shows beyond its video.
    `on_started`: called once per tab when its picture first moves.
    """
    own_browser = browser is None
    servers: list[HarnessServer] = []
    if browser is None:
        browser = await asyncio.to_thread(Chromium().start)
    try:
        plans = _plan_pages(urls, servers)
        async with aiohttp.ClientSession() as session:
            tasks = {
                name: _play_on(
                    session,
                    browser,
                    page_url,
                    seconds,
                    startup_timeout,
                    ARTIFACTS / f"player-{_artifact_name(name)}.png" if screenshots else None,
                    reported,
                    probe,
                    on_started,
                )
                for name, (page_url, reported) in plans.items()
            }
            results = await asyncio.gather(*tasks.values())
        return dict(zip(tasks, results, strict=True))
    finally:
        for server in servers:
            server.stop()
        if own_browser:
            await asyncio.to_thread(browser.cleanup)


async def play_async(
    url: str,
    seconds: float,
    *,
    startup_timeout: float = 30.0,
    screenshot: bool = True,
    name: str | None = None,
    browser: Chromium | None = None,
    probe: str | None = None,
) -> PlayResult:
    """Play ``url`` for ``seconds`` after playback starts; see the module docstring."""
    key = name or _artifact_name(url)
    results = await play_many_async(
        {key: url},
        seconds,
        startup_timeout=startup_timeout,
        screenshots=screenshot,
        browser=browser,
        probe=probe,
    )
    return results[key]


def play(url: str, seconds: float, **kwargs: Any) -> PlayResult:
    """Synchronous ``play_async`` (runs its own event loop in a helper thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fn = functools.partial(asyncio.run, play_async(url, seconds, **kwargs))
        return pool.submit(fn).result()


@contextlib.contextmanager
def serve_directory(path: Path | str) -> Any:
    """Serve a local HLS directory on loopback; yields the HarnessServer."""
    with HarnessServer(path) as server:
        yield server
