"""HLS validation with real tools: playlist parsing, ffprobe, continuity, a watcher.

Used by the worker's media tests, the end-to-end suite and the benchmark to
judge HLS output the way a player would:

- ``parse_media_playlist`` / ``parse_master_playlist``: pure parsers of the
  playlist text (no I/O) into frozen dataclasses.
- ``probe_segment``: ``ffprobe -of json`` on one segment (streams, codecs,
  per-stream first and last timestamps from its packets).
- ``check_continuity``: across consecutive segments, each stream's timestamps
  must go on where the previous segment's ended (within one frame plus a
  tolerance), except across an ``EXT-X-DISCONTINUITY``.
- ``validate``: all of the above on a live playlist URL or path, returning a
  report whose ``problems`` list is empty when the stream is good.
- ``PlaylistWatcher``: polls one or many playlists in a background thread and
  records per stream the longest time without a new segment and whether it
  was ever unreachable (churn and handoff tests).

Locations are either ``http(s)://`` URLs (loopback) or filesystem paths;
segment URIs are resolved relative to the playlist.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

FFPROBE = "ffprobe"


class HlsError(RuntimeError):
    """A playlist or segment could not be read or parsed."""


# -- playlists (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One media segment as the playlist lists it."""

    uri: str
    duration: float  # EXTINF
    sequence: int  # media sequence number
    discontinuity: bool  # an EXT-X-DISCONTINUITY precedes it
    discontinuity_sequence: int  # value of the discontinuity sequence it belongs to
    program_date_time: datetime | None
    title: str = ""


@dataclass(frozen=True)
class MediaPlaylist:
    version: int | None
    target_duration: int
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[Segment, ...]
    endlist: bool
    playlist_type: str | None
    map_uri: str | None  # EXT-X-MAP (fMP4 init segment)
    independent_segments: bool

    @property
    def discontinuity_positions(self) -> tuple[int, ...]:
        """Indexes (into ``segments``) of segments preceded by EXT-X-DISCONTINUITY."""
        return tuple(i for i, s in enumerate(self.segments) if s.discontinuity)

    @property
    def last_sequence(self) -> int | None:
        return self.segments[-1].sequence if self.segments else None

    @property
    def total_duration(self) -> float:
        return sum(s.duration for s in self.segments)


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: str | None
    codecs: str | None


def _attributes(text: str) -> dict[str, str]:
    """Parse an HLS attribute list (KEY=value,KEY="quoted, value")."""
    attrs: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip()
        if eq + 1 < len(text) and text[eq + 1] == '"':
            end = text.find('"', eq + 2)
            if end < 0:
                raise HlsError(f"unterminated quoted attribute in {text!r}")
            attrs[key] = text[eq + 2 : end]
            i = end + 2  # past the quote and the comma
        else:
            end = text.find(",", eq + 1)
            end = len(text) if end < 0 else end
            attrs[key] = text[eq + 1 : end].strip()
            i = end + 1
    return attrs


def _lines(text: str) -> list[str]:
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != "#EXTM3U":
        raise HlsError("not an HLS playlist (first line is not #EXTM3U)")
    return lines


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a media playlist; raise HlsError on anything a player would reject."""
    lines = _lines(text)
    version = target = None
    media_seq = disc_seq = 0
    endlist = independent = False
    playlist_type = map_uri = None
    segments: list[Segment] = []
    duration: float | None = None
    title = ""
    pending_disc = False
    pdt: datetime | None = None
    seq_of_next: int | None = None
    disc_count = 0
    for ln in lines[1:]:
        tag, _, value = ln.partition(":")
        if tag == "#EXT-X-VERSION":
            version = int(value)
        elif tag == "#EXT-X-TARGETDURATION":
            target = int(value)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            media_seq = int(value)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            disc_seq = int(value)
        elif tag == "#EXT-X-DISCONTINUITY":
            pending_disc = True
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            pdt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif tag == "#EXTINF":
            dur, _, title = value.partition(",")
            duration = float(dur)
        elif tag == "#EXT-X-ENDLIST":
            endlist = True
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            playlist_type = value
        elif tag == "#EXT-X-MAP":
            map_uri = _attributes(value).get("URI")
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
        elif tag == "#EXT-X-STREAM-INF":
            raise HlsError("this is a master playlist, not a media playlist")
        elif not ln.startswith("#"):
            if duration is None:
                raise HlsError(f"segment {ln!r} has no #EXTINF")
            if seq_of_next is None:
                seq_of_next = media_seq
            if pending_disc:
                disc_count += 1
            segments.append(
                Segment(
                    uri=ln,
                    duration=duration,
                    sequence=seq_of_next,
                    discontinuity=pending_disc,
                    discontinuity_sequence=disc_seq + disc_count,
                    program_date_time=pdt,
                    title=title,
                )
            )
            seq_of_next += 1
            duration, title, pending_disc, pdt = None, "", False, None
    if target is None:
        raise HlsError("playlist has no #EXT-X-TARGETDURATION")
    return MediaPlaylist(
        version=version,
        target_duration=target,
        media_sequence=media_seq,
        discontinuity_sequence=disc_seq,
        segments=tuple(segments),
        endlist=endlist,
        playlist_type=playlist_type,
        map_uri=map_uri,
        independent_segments=independent,
    )


def parse_master_playlist(text: str) -> tuple[Variant, ...]:
    """The variant streams of a master playlist, in order."""
    lines = _lines(text)
    variants: list[Variant] = []
    attrs: dict[str, str] | None = None
    for ln in lines[1:]:
        if ln.startswith("#EXT-X-STREAM-INF:"):
            attrs = _attributes(ln.partition(":")[2])
        elif not ln.startswith("#") and attrs is not None:
            variants.append(
                Variant(
                    uri=ln,
                    bandwidth=int(attrs.get("BANDWIDTH", "0")),
                    resolution=attrs.get("RESOLUTION"),
                    codecs=attrs.get("CODECS"),
                )
            )
            attrs = None
    if not variants:
        raise HlsError("master playlist lists no variant streams")
    return tuple(variants)


def playlist_problems(pl: MediaPlaylist, *, tolerance: float = 0.5) -> list[str]:
    """Problems of one playlist snapshot (pure): EXTINF against the target
    duration, and PROGRAM-DATE-TIME steps against EXTINF (within ``tolerance``
    seconds)."""
    problems: list[str] = []
    for s in pl.segments:
        # RFC 8216 4.3.3.1: EXTINF rounded to an integer must not exceed the target.
        # Half up, as the RFC means it (Python's round() would take 2.5 to 2).
        if math.floor(s.duration + 0.5) > pl.target_duration:
            problems.append(
                f"segment {s.sequence} EXTINF {s.duration:.3f} exceeds target {pl.target_duration}"
            )
        if s.duration <= 0:
            problems.append(f"segment {s.sequence} has non-positive EXTINF {s.duration}")
    # Wall-clock dates must advance with the media, except across a discontinuity.
    for a, b in itertools.pairwise(pl.segments):
        if a.program_date_time is None or b.program_date_time is None or b.discontinuity:
            continue
        step = (b.program_date_time - a.program_date_time).total_seconds()
        if abs(step - a.duration) > tolerance:
            problems.append(
                f"PROGRAM-DATE-TIME advances {step:.3f}s from segment {a.sequence} "
                f"to {b.sequence}, EXTINF says {a.duration:.3f}s"
            )
    return problems


# -- fetching -----------------------------------------------------------------


def resolve(base: str, uri: str) -> str:
    """A segment URI relative to its playlist location (URL or path)."""
    if _is_url(base):
        return urljoin(base, uri)
    if _is_url(uri):
        return uri
    return str(Path(base).parent / uri)


def _is_url(loc: str) -> bool:
    return urlsplit(loc).scheme in ("http", "https")


def fetch(location: str, timeout: float = 5.0) -> bytes:
    """Read a URL or a file; HlsError if it is unreachable or missing."""
    try:
        if _is_url(location):
            req = urllib.request.Request(location, headers={"Cache-Control": "no-cache"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return bytes(resp.read())
        return Path(location).read_bytes()
    except (OSError, urllib.error.URLError) as exc:
        raise HlsError(f"cannot read {location}: {exc}") from exc


def load_media_playlist(location: str, timeout: float = 5.0) -> MediaPlaylist:
    return parse_media_playlist(fetch(location, timeout).decode("utf-8", errors="replace"))


# -- ffprobe ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamTiming:
    """One elementary stream inside a segment, from its packets."""

    index: int
    codec_type: str  # "video" / "audio"
    codec_name: str
    start: float  # smallest pts, seconds
    end: float  # largest pts + packet duration, seconds
    frame_duration: float  # typical packet duration, seconds
    packets: int
    keyframe_first: bool  # does the first packet (in decode order) carry a key frame
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class SegmentProbe:
    location: str
    format_name: str
    duration: float | None  # container duration ffprobe reports
    streams: tuple[StreamTiming, ...]

    def stream(self, codec_type: str) -> StreamTiming | None:
        return next((s for s in self.streams if s.codec_type == codec_type), None)

    @property
    def codecs(self) -> tuple[str, ...]:
        return tuple(s.codec_name for s in self.streams)


def ffprobe_json(path: str | Path, *, packets: bool = True, timeout: float = 30.0) -> dict:
    """Raw ``ffprobe -of json`` output for a local file or URL."""
    argv = [FFPROBE, "-v", "error", "-of", "json", "-show_format", "-show_streams"]
    if packets:
        argv += ["-show_entries", "packet=stream_index,pts_time,dts_time,duration_time,flags"]
    argv.append(str(path))
    res = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise HlsError(f"ffprobe failed on {path}: {res.stderr.decode(errors='replace')[-500:]}")
    return dict(json.loads(res.stdout))


def probe_segment(
    location: str, *, init: bytes | None = None, timeout: float = 30.0
) -> SegmentProbe:
    """Probe one segment; for fMP4 pass the init segment's bytes as ``init``."""
    data = fetch(location, timeout)
    suffix = Path(urlsplit(location).path).suffix or ".ts"
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write((init or b"") + data)
        tmp.flush()
        raw = ffprobe_json(tmp.name, timeout=timeout)
    return _segment_probe(location, raw)


def _segment_probe(location: str, raw: dict) -> SegmentProbe:
    by_stream: dict[int, list[dict]] = {}
    for pkt in raw.get("packets", []):
        by_stream.setdefault(int(pkt["stream_index"]), []).append(pkt)
    streams: list[StreamTiming] = []
    for st in raw.get("streams", []):
        pkts = [p for p in by_stream.get(int(st["index"]), []) if "pts_time" in p]
        if not pkts:
            continue
        pts = [float(p["pts_time"]) for p in pkts]
        durs = sorted(float(p.get("duration_time", 0) or 0) for p in pkts)
        frame = durs[len(durs) // 2] if durs else 0.0
        if frame <= 0 and len(pts) > 1:
            ordered = sorted(pts)
            frame = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
        ends = [
            p + (float(k.get("duration_time", 0) or 0) or frame)
            for p, k in zip(pts, pkts, strict=True)
        ]
        streams.append(
            StreamTiming(
                index=int(st["index"]),
                codec_type=str(st.get("codec_type", "")),
                codec_name=str(st.get("codec_name", "")),
                start=min(pts),
                end=max(ends),
                frame_duration=frame,
                packets=len(pkts),
                keyframe_first="K" in str(pkts[0].get("flags", "")),
                width=st.get("width"),
                height=st.get("height"),
            )
        )
    fmt = raw.get("format", {})
    dur = fmt.get("duration")
    return SegmentProbe(
        location=location,
        format_name=str(fmt.get("format_name", "")),
        duration=float(dur) if dur is not None else None,
        streams=tuple(streams),
    )


def check_continuity(
    segments: Sequence[Segment],
    probes: Sequence[SegmentProbe],
    *,
    tolerance: float = 0.1,
) -> list[str]:
    """Gaps or overlaps between consecutive segments' timestamps, per stream type.

    Between segment i and i+1 (unless i+1 starts a discontinuity) each stream
    must start within one frame plus ``tolerance`` seconds of where it ended.
    The allowance is wider than a frame because muxers split audio and video
    at a key frame, so audio may spill a few frames either way.
    """
    problems: list[str] = []
    pairs = list(zip(segments, probes, strict=True))
    for (seg_a, pa), (seg_b, pb) in itertools.pairwise(pairs):
        if seg_b.discontinuity:
            continue
        for sa in pa.streams:
            sb = pb.stream(sa.codec_type)
            if sb is None:
                problems.append(f"segment {seg_b.sequence} lost its {sa.codec_type} stream")
                continue
            gap = sb.start - sa.end
            allowed = sa.frame_duration + tolerance
            if abs(gap) > allowed:
                kind = "gap" if gap > 0 else "overlap"
                problems.append(
                    f"{sa.codec_type} {kind} of {abs(gap) * 1000:.0f} ms between segments "
                    f"{seg_a.sequence} and {seg_b.sequence} (allowed {allowed * 1000:.0f} ms)"
                )
    return problems


def check_durations(
    segments: Sequence[Segment], probes: Sequence[SegmentProbe], *, tolerance: float = 0.25
) -> list[str]:
    """EXTINF must match the media inside (video span; else the longest stream)."""
    problems: list[str] = []
    for seg, probe in zip(segments, probes, strict=True):
        st = probe.stream("video") or max(
            probe.streams, key=lambda s: s.end - s.start, default=None
        )
        if st is None:
            problems.append(f"segment {seg.sequence} has no decodable stream")
            continue
        actual = st.end - st.start
        if abs(actual - seg.duration) > tolerance:
            problems.append(
                f"segment {seg.sequence} EXTINF {seg.duration:.3f}s but media spans {actual:.3f}s"
            )
    return problems


@dataclass(frozen=True)
class HlsReport:
    """What ``validate`` found; ``problems`` is empty when the stream is good."""

    location: str
    playlist: MediaPlaylist
    probes: tuple[SegmentProbe, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def codecs(self) -> tuple[str, ...]:
        """Sorted codec names found in the first probed segment."""
        return tuple(sorted(self.probes[0].codecs)) if self.probes else ()


def validate(
    location: str,
    *,
    expect_codecs: Sequence[str] | None = None,
    min_segments: int = 2,
    max_segments: int | None = None,
    continuity_tolerance: float = 0.1,
    duration_tolerance: float = 0.25,
    attempts: int = 3,
) -> HlsReport:
    """Validate a live HLS stream (media playlist) end to end.

    Checks: playlist syntax and EXTINF vs target duration; at least
    ``min_segments`` segments; every segment probes with ffprobe, starts with
    a key frame and has the expected codecs (``expect_codecs`` e.g.
    ``("aac", "h264")``, compared as a sorted set); EXTINF matches the media;
    timestamps continuous across segments except at discontinuities.

    A live window rolls while we read it, so a segment may vanish between the
    playlist read and the segment read; the whole snapshot is retried up to
    ``attempts`` times before that counts as a problem.
    """
    last_exc: HlsError | None = None
    for _ in range(attempts):
        try:
            return _validate_once(
                location,
                expect_codecs=expect_codecs,
                min_segments=min_segments,
                max_segments=max_segments,
                continuity_tolerance=continuity_tolerance,
                duration_tolerance=duration_tolerance,
            )
        except HlsError as exc:
            last_exc = exc
            time.sleep(0.3)
    assert last_exc is not None
    raise last_exc


def _validate_once(
    location: str,
    *,
    expect_codecs: Sequence[str] | None,
    min_segments: int,
    max_segments: int | None,
    continuity_tolerance: float,
    duration_tolerance: float,
) -> HlsReport:
    pl = load_media_playlist(location)
    problems = playlist_problems(pl)
    segments = pl.segments if max_segments is None else pl.segments[-max_segments:]
    if len(pl.segments) < min_segments:
        problems.append(f"only {len(pl.segments)} segments, wanted at least {min_segments}")
    init = fetch(resolve(location, pl.map_uri)) if pl.map_uri else None
    # Download all segments first (quickly, before the window rolls), probe after.
    workdir = Path(tempfile.mkdtemp(prefix="camstream-hlscheck-"))
    try:
        local: list[str] = []
        for i, seg in enumerate(segments):
            name = Path(urlsplit(seg.uri).path).name or f"seg{i}"
            path = workdir / f"{i:04d}-{name}"
            path.write_bytes(fetch(resolve(location, seg.uri)))
            local.append(str(path))
        probes = tuple(probe_segment(p, init=init) for p in local)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    probes = tuple(
        SegmentProbe(resolve(location, s.uri), p.format_name, p.duration, p.streams)
        for s, p in zip(segments, probes, strict=True)
    )
    for seg, probe in zip(segments, probes, strict=True):
        if not probe.streams:
            problems.append(f"segment {seg.sequence} has no streams")
            continue
        video = probe.stream("video")
        if video is not None and not video.keyframe_first:
            problems.append(f"segment {seg.sequence} does not start with a key frame")
        if expect_codecs is not None and sorted(probe.codecs) != sorted(expect_codecs):
            problems.append(
                f"segment {seg.sequence} codecs {sorted(probe.codecs)}, "
                f"expected {sorted(expect_codecs)}"
            )
    problems += check_durations(segments, probes, tolerance=duration_tolerance)
    problems += check_continuity(segments, probes, tolerance=continuity_tolerance)
    return HlsReport(location, pl, probes, tuple(problems))


def wait_for_segments(location: str, count: int = 2, timeout: float = 30.0) -> MediaPlaylist:
    """Poll until the playlist exists and lists at least ``count`` segments."""
    deadline = time.monotonic() + timeout
    last = "never readable"
    while True:
        try:
            pl = load_media_playlist(location)
            if len(pl.segments) >= count:
                return pl
            last = f"{len(pl.segments)} segments"
        except HlsError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise HlsError(f"{location}: no {count} segments after {timeout}s ({last})")
        time.sleep(0.2)


# -- watcher ------------------------------------------------------------------


@dataclass(frozen=True)
class WatchResult:
    """What a ``PlaylistWatcher`` saw of one stream.

    ``longest_gap`` is the longest time (seconds) between two observations of
    a new segment, counting from the first good read and, at the end, up to
    the stop; its resolution is the poll interval.
    """

    name: str
    polls: int
    failed_polls: int
    new_segments: int
    longest_gap: float
    longest_gap_ended: float | None  # wall clock (time.time()), to match with logs
    ever_unreachable: bool  # failed a read after a good one, or was never readable
    first_read_after: float | None  # seconds from the watch start to the first good read
    unreachable_seconds: float
    discontinuities: int  # new segments that came with EXT-X-DISCONTINUITY
    sequence_regressions: int  # media sequence went backwards (breaks players)
    skipped_sequences: int  # sequence numbers that rolled out before we saw them
    sequence_conflicts: int  # a sequence number reused for a different segment URI
    last_sequence: int | None
    errors: tuple[str, ...]  # first few distinct errors


@dataclass
class _StreamState:
    name: str
    location: str
    started: float
    polls: int = 0
    failed: int = 0
    new_segments: int = 0
    last_new: float = 0.0
    longest_gap: float = 0.0
    longest_gap_ended: float | None = None
    unreachable_since: float | None = None
    unreachable_total: float = 0.0
    ever_unreachable: bool = False
    discontinuities: int = 0
    regressions: int = 0
    skipped: int = 0
    conflicts: int = 0
    uris: dict[int, str] = field(default_factory=dict)
    last_seq: int | None = None
    first_read: float | None = None
    errors: list[str] = field(default_factory=list)


class PlaylistWatcher:
    """Poll playlists in a background thread and keep per-stream continuity figures.

    ``targets`` maps a stream name to its playlist URL or path (a single
    location is accepted too). Each playlist is polled by its own loop, every
    ``interval`` seconds (default: half the smallest target duration seen, at
    most 1 s), like independent viewers: a slow or unreachable stream never
    delays the polls of another.
    """

    def __init__(
        self,
        targets: Mapping[str, str] | str,
        *,
        interval: float | None = None,
        request_timeout: float = 2.0,
    ) -> None:
        self.targets = {"stream": targets} if isinstance(targets, str) else dict(targets)
        self._fixed_interval = interval
        self._interval = interval if interval is not None else 1.0
        self.request_timeout = request_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._states: dict[str, _StreamState] = {}
        self._stopped_at: float | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        now = time.monotonic()
        self._stop.clear()
        self._stopped_at = None
        self._states = {
            n: _StreamState(n, loc, started=now, last_new=now) for n, loc in self.targets.items()
        }
        self._threads = [
            threading.Thread(target=self._run, args=(st,), name=f"watch-{st.name}", daemon=True)
            for st in self._states.values()
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict[str, WatchResult]:
        """Stop polling; the results are frozen at this moment."""
        self._stop.set()
        deadline = time.monotonic() + 30
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        return self.results()

    def results(self) -> dict[str, WatchResult]:
        """A snapshot, with ongoing gaps and outages counted up to now (or the stop)."""
        now = self._stopped_at if self._stopped_at is not None else time.monotonic()
        with self._lock:
            return {n: _result(s, now) for n, s in self._states.items()}

    def _run(self, st: _StreamState) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._poll(st)
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - began)))

    def _poll(self, st: _StreamState) -> None:
        try:
            pl = load_media_playlist(st.location, timeout=self.request_timeout)
        except HlsError as exc:
            now = time.monotonic()
            with self._lock:
                st.polls += 1
                st.failed += 1
                # Before the first good read the stream is "not yet up", not
                # "unreachable": tests may start watching before the stream.
                if st.first_read is not None:
                    st.ever_unreachable = True
                    if st.unreachable_since is None:
                        st.unreachable_since = now
                _note_error(st, str(exc))
            return
        now = time.monotonic()
        with self._lock:
            st.polls += 1
            if st.unreachable_since is not None:
                st.unreachable_total += now - st.unreachable_since
                st.unreachable_since = None
            if self._fixed_interval is None and pl.target_duration > 0:
                self._interval = min(self._interval, max(0.2, pl.target_duration / 2))
            _observe(st, pl, now)


def _observe(st: _StreamState, pl: MediaPlaylist, now: float) -> None:
    if st.first_read is None:
        st.first_read = now
        st.last_new = now  # gaps are measured from the first good read
    # A sequence number must keep naming the same segment: a writer that
    # restarts and reuses numbers makes players skip or repeat media.
    for seg in pl.segments:
        known = st.uris.get(seg.sequence)
        if known is None:
            st.uris[seg.sequence] = seg.uri
        elif known != seg.uri:
            st.conflicts += 1
            st.uris[seg.sequence] = seg.uri
            _note_error(st, f"sequence {seg.sequence} changed from {known} to {seg.uri}")
    for old in [n for n in st.uris if n < pl.media_sequence - 64]:
        del st.uris[old]  # keep memory bounded on long watches
    last = pl.last_sequence
    if last is None:
        return
    if st.last_seq is None:
        st.last_seq = last
        return
    if last < st.last_seq:
        st.regressions += 1
        _note_error(st, f"media sequence went back from {st.last_seq} to {last}")
        st.last_seq = last
        return
    if last == st.last_seq:
        return
    new = [s for s in pl.segments if s.sequence > st.last_seq]
    first_new = new[0].sequence if new else last
    st.skipped += max(0, first_new - st.last_seq - 1)
    st.discontinuities += sum(1 for s in new if s.discontinuity)
    st.new_segments += last - st.last_seq
    if now - st.last_new > st.longest_gap:
        st.longest_gap = now - st.last_new
        st.longest_gap_ended = time.time()
    st.last_new = now
    st.last_seq = last


def _note_error(st: _StreamState, message: str) -> None:
    if message not in st.errors and len(st.errors) < 5:
        st.errors.append(message)


def _result(st: _StreamState, now: float) -> WatchResult:
    unreachable = st.unreachable_total
    if st.unreachable_since is not None:
        unreachable += now - st.unreachable_since
    return WatchResult(
        name=st.name,
        polls=st.polls,
        failed_polls=st.failed,
        new_segments=st.new_segments,
        longest_gap=max(st.longest_gap, now - st.last_new),
        longest_gap_ended=st.longest_gap_ended if st.longest_gap >= now - st.last_new else None,
        ever_unreachable=st.ever_unreachable or st.first_read is None,
        first_read_after=None if st.first_read is None else st.first_read - st.started,
        unreachable_seconds=unreachable,
        discontinuities=st.discontinuities,
        sequence_regressions=st.regressions,
        skipped_sequences=st.skipped,
        sequence_conflicts=st.conflicts,
        last_sequence=st.last_seq,
        errors=tuple(st.errors),
    )
