"""How a worker's streams are shown: JSON for programs, HTML pages for people.

Who calls this: server.py, for /api/streams, / (the index of all streams)
and /streams/{ns}/{name}/ (one stream's player). Pure functions from
`StreamStatus` snapshots to dicts and strings; no I/O, so the pages can be
checked without a server.

Every link in the pages is relative (the player page lives in its stream's
folder, next to index.m3u8), so the worker also works behind an Ingress that
mounts it under a path prefix. Scripts come only from /static (hls.js is
installed from npm by scripts/fetch-hlsjs.sh, never loaded from a CDN), and
the content security policy below says so to the browser as well.

Reason and message texts come from the supervisor and may quote what a camera
sent; they are escaped like every other value.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from camstream import wire
from camstream.spec import StreamKey
from camstream_worker.state import Phase, StreamStatus

# hls.js turns segments into blob: URLs for Media Source Extensions and may run
# its demuxer in a blob: worker; everything else is same-origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)
# Live players on the index page: each one is a decoder in the viewer's
# browser, so only the first few Live streams get one; the table lists all.
INDEX_PLAYERS = 12
REFRESH_MS = 5000


def segment_age(status: StreamStatus, now: float) -> float | None:
    """Seconds since the newest segment, or None before the first one."""
    if status.last_segment_at is None:
        return None
    return max(0.0, now - status.last_segment_at)


def status_view(status: StreamStatus, now: float | None = None) -> dict[str, Any]:
    """The JSON form of one status (the /api/streams payload). Holds no secrets:
    StreamStatus has none, and the source URL is deliberately not part of it."""
    now = time.time() if now is None else now
    key = status.key
    folder = wire.stream_path(key.namespace, key.name)
    age = segment_age(status, now)
    return {
        "key": str(key),
        "namespace": key.namespace,
        "name": key.name,
        "protocol": status.protocol,
        "phase": status.phase.value,
        "reason": status.reason,
        "message": status.message,
        "since": status.since,
        "reconnects": status.reconnects,
        "bytes_in": status.bytes_in,
        "segments": status.segments,
        "segment_age": None if age is None else round(age, 3),
        "media_sequence": status.media_sequence,
        "discontinuity_sequence": status.discontinuity_sequence,
        "codecs": {"video": status.video_codec, "audio": status.audio_codec},
        "size": (
            {"width": status.width, "height": status.height}
            if status.width is not None and status.height is not None
            else None
        ),
        "renditions": list(status.renditions),
        "playback": folder + wire.PLAYLIST,
        "player": folder,
        "thumbnail": folder + wire.THUMBNAIL if status.thumbnail else None,
    }


def _codecs(status: StreamStatus) -> str:
    codecs = "+".join(c for c in (status.video_codec, status.audio_codec) if c)
    size = f" {status.width}x{status.height}" if status.width and status.height else ""
    return (codecs or "-") + size


def _age(status: StreamStatus, now: float) -> str:
    age = segment_age(status, now)
    return "-" if age is None else f"{age:.1f} s"


def _page(title: str, static: str, body: str, body_attrs: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{static}player.css">
</head>
<body{body_attrs}>
{body}
<script src="{static}hls.min.js"></script>
<script src="{static}player.js"></script>
</body>
</html>
"""


def _phase_badge(status: StreamStatus) -> str:
    phase = status.phase.value
    return f'<span class="phase phase-{phase.lower()}" data-field="phase">{phase}</span>'


def player_page(status: StreamStatus, now: float | None = None) -> str:
    """The page at /streams/{ns}/{name}/: one large player and the stream's state."""
    now = time.time() if now is None else now
    key = status.key
    title = f"{key} - camstream"
    # Relative, from the player's folder /streams/<ns>/<name>/ up to the root.
    api = "../../.." + wire.api_stream_path(key.namespace, key.name)
    poster = f' poster="{wire.THUMBNAIL}"' if status.thumbnail else ""
    body = f"""<header><a href="../../../">camstream</a> / {escape(str(key))}</header>
<main class="player" data-key="{escape(str(key))}">
<video class="live" data-src="{wire.PLAYLIST}" controls muted autoplay playsinline{poster}></video>
{_recordings_section()}
<p class="state">{_phase_badge(status)}
<span data-field="reason">{escape(status.reason)}</span>
<span data-field="message">{escape(status.message)}</span></p>
<p class="player-error" hidden></p>
<dl>
<dt>protocol</dt><dd>{escape(status.protocol)}</dd>
<dt>codecs</dt><dd data-field="codecs">{escape(_codecs(status))}</dd>
<dt>segment age</dt><dd data-field="age">{_age(status, now)}</dd>
<dt>playlist</dt><dd><a href="{wire.PLAYLIST}">{wire.PLAYLIST}</a></dd>
</dl>
</main>"""
    attrs = f' data-api="{escape(api)}" data-refresh="{REFRESH_MS}"'
    return _page(title, "../../../static/", body, attrs)


def _recordings_section() -> str:
    """The recorded past under the player: a timeline to scrub, a clip button (player.js).

    Hidden until the worker says it keeps recordings (recordings/ranges.json);
    a link ending in #t=<Unix seconds> opens the page playing that moment.
    """
    return """<section class="recordings" data-recordings="recordings/" hidden>
<h2>Recorded <small data-field="recorded"></small></h2>
<div class="timeline" title="click to play the recording from there">
<div class="timeline-ranges"></div><div class="timeline-cursor" hidden></div></div>
<p class="timeline-scale"><span data-field="timeline-from"></span>
<span data-field="timeline-to"></span></p>
<p class="recording-actions"><button type="button" data-action="live">Live</button>
<a class="button" data-action="clip" download>Download clip</a>
<span data-field="playing-at"></span></p>
</section>"""


def index_page(statuses: list[StreamStatus], now: float | None = None) -> str:
    """The page at /: small live players for the first Live streams, a table of all."""
    now = time.time() if now is None else now
    ordered = sorted(statuses, key=lambda s: (s.key.namespace, s.key.name))
    counts = {phase: 0 for phase in Phase}
    for status in ordered:
        counts[status.phase] += 1
    summary = ", ".join(f"{n} {phase.value}" for phase, n in counts.items() if n) or "no streams"

    cards = []
    for status in [s for s in ordered if s.phase is Phase.LIVE][:INDEX_PLAYERS]:
        folder = _folder(status.key)
        cards.append(
            f'<figure data-key="{escape(str(status.key))}">'
            f'<video class="live" data-src="{folder}{wire.PLAYLIST}" muted autoplay playsinline>'
            f'</video><figcaption><a href="{folder}">{escape(str(status.key))}</a>'
            f"</figcaption></figure>"
        )
    rows = []
    for status in ordered:
        rows.append(
            f'<tr data-key="{escape(str(status.key))}">'
            f'<td><a href="{_folder(status.key)}">{escape(str(status.key))}</a></td>'
            f"<td>{escape(status.protocol)}</td>"
            f"<td>{_phase_badge(status)}</td>"
            f'<td data-field="reason">{escape(status.reason)}</td>'
            f'<td data-field="codecs">{escape(_codecs(status))}</td>'
            f'<td data-field="age">{_age(status, now)}</td>'
            f'<td data-field="reconnects">{status.reconnects}</td></tr>'
        )
    body = f"""<header>camstream <small>{escape(summary)}</small></header>
<main>
<section class="grid">{"".join(cards)}</section>
<table class="streams">
<thead><tr><th>stream</th><th>protocol</th><th>phase</th><th>reason</th><th>codecs</th>
<th>segment age</th><th>reconnects</th></tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
</main>"""
    attrs = f' data-api="{wire.API_STREAMS[1:]}" data-refresh="{REFRESH_MS}"'
    return _page("camstream", "static/", body, attrs)


def _folder(key: StreamKey) -> str:
    """A stream's folder relative to the index page at the root."""
    return wire.stream_path(key.namespace, key.name)[1:]


def message_page(title: str, text: str) -> str:
    """A plain page for errors people see in a browser (missing hls.js, unknown stream)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>
<body><h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>
"""
