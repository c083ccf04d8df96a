"""Reading the profiles `bench/worker_profile.py` takes of a camstream worker.

Who calls this: worker_profile.py, which samples each worker process with
py-spy (collapsed stacks, `-f raw`), counts syscalls and allocations with
`perf stat`, and reads `/proc/PID/smaps`. The functions here turn that text
into the breakdown of issue 12 (part 2): where a stream's time goes by stage
of the passthrough path, and where its memory goes by kind of mapping.

The stages, from the socket to the playlist (an RTMP push stream's path through
an engine process; the front only hands the socket over):

    RTMP read (event loop, recv) → chunk decode → FLV parsing → PyAV packet
    creation → HLS writer, per packet (holding the GOP) → at a cut: PyAV muxing
    (MPEG-TS) → segment file write → playlist render and write

Each sample is charged to the innermost stage on its stack, so a segment
written from inside the RTMP read callback counts as a segment write, not as
RTMP reading. Pure functions; no I/O here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# (stage, file suffix or None for any file, function names or None for any).
# Checked in this order: the first stage any frame of the stack matches wins,
# so the innermost stages come first.
STAGES: tuple[tuple[str, str | None, frozenset[str] | None], ...] = (
    ("playlist writes", "outputs/hls/writer.py", frozenset({"_publish"})),
    ("PyAV muxing (MPEG-TS, per segment)", "outputs/hls/writer.py", frozenset({"_mux"})),
    ("segment file writes", "outputs/hls/writer.py", frozenset({"_write_atomically"})),
    ("segment cut, other (callbacks, status)", "outputs/hls/writer.py", frozenset({"_flush"})),
    ("HLS writer per packet (hold the GOP)", "outputs/hls/writer.py", None),
    ("outputs and session fan-out", "camstream_worker/outputs/", None),
    ("outputs and session fan-out", "camstream_worker/session.py", None),
    ("outputs and session fan-out", "camstream_worker/stream.py", None),
    ("PyAV packet creation", "sources/rtmp.py", frozenset({"on_packet"})),
    ("FLV parsing", "protocols/rtmp/flv.py", None),
    ("RTMP chunk decode and messages", "protocols/rtmp/", None),
    ("RTMP chunk decode and messages", "servers/rtmp/connection.py", None),
    ("front: relay to another worker", "servers/rtmp/relay.py", None),
    ("RTMP server: accept, handshake, hand-over, timers", "servers/rtmp/", None),
    ("IPC with the pool (control pipe, fd passing)", "camstream_worker/pool/ipc.py", None),
    ("IPC with the pool (control pipe, fd passing)", "multiprocessing/connection.py", None),
    ("HTTP server", "servers/http/", None),
    ("RTMP read (event loop, socket recv)", "asyncio/selector_events.py", None),
    ("event loop: waiting in epoll", "selectors.py", frozenset({"select"})),
    ("event loop, other", "asyncio/", None),
)
# Every process's event loop runs under pool/child.py's `main` (engines) or the
# CLI's (the front): those frames are on every stack and name no stage.
OTHER = "other"
# The perf event worker_profile.py counts once per packet PyAV muxes.
MUXED = "packets_muxed"


@dataclass(frozen=True)
class Frame:
    function: str
    where: str  # a file (Python frames) or a shared object (native frames)


def parse_collapsed(line: str) -> tuple[list[Frame], int]:
    """One line of py-spy's `-f raw`: frames root first, then the sample count.

    Frames look like `HlsWriter._mux (camstream_worker/outputs/hls/writer.py:436)`
    or `av_write_frame (libavformat-4639def2.so.62.12.102)`.
    """
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        raise ValueError(f"not a collapsed stack line: {line[:80]!r}")
    frames = []
    for text in stack.split(";"):
        function, _, rest = text.rpartition(" (")
        if not rest.endswith(")"):
            function, rest = text, ")"
        where = rest[:-1].rsplit(":", 1)[0] if rest[:-1].rsplit(":", 1)[-1].isdigit() else rest[:-1]
        frames.append(Frame(function=function, where=where))
    return frames, int(count)


def stage_of(frames: list[Frame]) -> str:
    """The stage a sample belongs to (STAGES' order: innermost first)."""
    for stage, suffix, functions in STAGES:
        for frame in frames:
            if suffix is not None and suffix not in frame.where:
                continue
            if functions is not None and frame.function.rpartition(".")[2] not in functions:
                continue
            return stage
    return OTHER


def leaf_library(frames: list[Frame]) -> str:
    """Where the sampled instruction was: Python code, or which native library."""
    leaf = frames[-1].where if frames else ""
    if leaf.endswith(".py") or leaf.startswith("<"):
        return "Python code"
    for prefix, name in (
        ("libavformat", "libavformat"),
        ("libavcodec", "libavcodec"),
        ("libavutil", "libavutil"),
        ("libpython", "libpython (interpreter)"),
        ("libc.so", "libc (incl. syscall stubs)"),
    ):
        if leaf.startswith(prefix):
            return name
    if ".cpython-" in leaf or leaf.endswith(".so") or ".so." in leaf:
        return "other native (PyAV's Cython, others)"
    return "other"


def breakdown(lines: Iterable[str], key: str = "stage") -> Counter[str]:
    """Samples per stage (`key="stage"`) or per leaf library (`key="library"`)."""
    totals: Counter[str] = Counter()
    for line in lines:
        if not line.strip():
            continue
        frames, count = parse_collapsed(line)
        totals[stage_of(frames) if key == "stage" else leaf_library(frames)] += count
    return totals


def parse_perf_stat_csv(text: str) -> dict[str, int]:
    """Event counts from `perf stat -x,` output (`<not counted>` and comments skipped)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#") or not fields[0].strip().isdigit():
            continue
        counts[fields[2].strip()] = counts.get(fields[2].strip(), 0) + int(fields[0])
    return counts


def smaps_by_kind(text: str) -> dict[str, dict[str, int]]:
    """PSS and private (clean + dirty) kB per kind of mapping in a /proc/PID/smaps text."""
    totals: dict[str, dict[str, int]] = {}
    kind = OTHER
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):  # a mapping's header line
            parts = line.split(None, 5)
            kind = _mapping_kind(parts[5].strip() if len(parts) > 5 else "")
            continue
        if head in ("Pss:", "Private_Clean:", "Private_Dirty:"):
            value = int(line.split()[1])
            bucket = totals.setdefault(kind, {"pss_kb": 0, "private_kb": 0})
            bucket["pss_kb" if head == "Pss:" else "private_kb"] += value
    return totals


def _mapping_kind(path: str) -> str:
    if path in ("", "[heap]"):
        return "heap and anonymous (Python objects, buffers)"
    if path.startswith("[stack"):
        return "stacks"
    if "av.libs/" in path or "/av/" in path:
        return "PyAV and its FFmpeg libraries"
    if "libpython" in path or "/bin/python" in path:
        return "Python interpreter"
    if path.startswith("["):
        return "kernel mappings (vdso, vvar)"
    return "other files (libc, extension modules)"


__all__ = [
    "MUXED",
    "OTHER",
    "STAGES",
    "Frame",
    "breakdown",
    "leaf_library",
    "parse_collapsed",
    "parse_perf_stat_csv",
    "smaps_by_kind",
    "stage_of",
]
