"""Recording end to end: real workers, a real S3 store (SeaweedFS), real players.

One SeaweedFS (master, volume, filer, S3 gateway) on loopback for the
module, and standalone workers (`camstream run`) recording synthetic cameras
into it (2 s segments grouped by 10 s, so the module runs in about two
minutes). In file order, sharing that timeline:

1. groups reach the store as the live segments' own bytes, one PUT per group;
2. the VOD playlist of a range plays in ffprobe, from a worker that does not
   run the stream;
3. the live stream has a DVR window (dvr.m3u8) reaching back past the
   live playlist; a clip of a range downloads as an MP4 that decodes end to end;
4. an outage of the store: recording goes on into the spool, everything is
   uploaded when the store is back, no gap; a worker whose spool bound is
   too small for the outage drops its oldest groups, counts them and says so;
5. the player page shows the recorded ranges as a timeline and plays a
   moment of the past in hls.js (headless Chromium, screenshot kept);
6. a handoff (two workers record the stream for a while, then the first
   stops): one timeline, one discontinuity, no duplicate, no gap, and a clip
   across the boundary decodes end to end;
7. retention, by time control: a sweep deletes what is old and nothing else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from camstream.recording import groupfile, layout
from camstream.recording.groupfile import Entry
from camstream.recording.janitor import policy_json
from camstream.spec import StreamKey
from camstream.storage.s3 import S3Store
from tests.harness.objectstore import BUCKET, SeaweedS3
from tests.harness.player import play
from tests.media.worker_process import WorkerProcess, camera_stream

pytestmark = [pytest.mark.media, pytest.mark.timeout(300)]

SEGMENT = 2
GROUP = 10
SYNTHETIC = {
    "protocol": "synthetic",
    "synthetic": {"width": 320, "height": 180, "fps": 15, "bitrateKbps": 200},
}
CAM = StreamKey("default", "cam")


def recorded(name: str, **recording: Any) -> dict[str, Any]:
    return camera_stream(
        name,
        SYNTHETIC,
        hls={"segmentSeconds": SEGMENT},
        recording={"enabled": True, "groupSeconds": GROUP, **recording},
    )


def store_of(s3: SeaweedS3, bucket: str = BUCKET) -> S3Store:
    return S3Store(
        endpoint=s3.endpoint,
        bucket=bucket,
        region="us-east-1",
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _objects(s3: SeaweedS3, prefix: str) -> list[tuple[str, int]]:
    store = await store_of(s3).start()
    try:
        return [(i.key, i.size) async for i in store.objects(prefix)]
    finally:
        await store.close()


def objects(s3: SeaweedS3, key: StreamKey) -> list[tuple[str, int]]:
    found = run(_objects(s3, layout.stream_prefix(key)))
    return [(k, n) for k, n in found if k.endswith(".ts")]


def wait(condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def get_json(worker: WorkerProcess, path: str) -> Any:
    return json.loads(worker.get(path))


def metric(worker: WorkerProcess, name: str) -> float:
    text = worker.get("/metrics").decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def ranges(worker: WorkerProcess, key: StreamKey = CAM, **query: float) -> dict[str, Any]:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return get_json(worker, f"/streams/{key.namespace}/{key.name}/recordings/ranges.json?{suffix}")


def vod(worker: WorkerProcess, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The VOD playlist of a range, as (pdt, duration, byterange, uri, discontinuity) dicts."""
    text = worker.get(
        f"/streams/default/cam/recordings/index.m3u8?from={start_ms / 1000}&to={end_ms / 1000}"
    ).decode()
    assert text.startswith("#EXTM3U") and "#EXT-X-PLAYLIST-TYPE:VOD" in text
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    entries: list[dict[str, Any]] = []
    item: dict[str, Any] = {"discontinuity": False}
    for line in text.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            item["discontinuity"] = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            moment = line.split(":", 1)[1].replace("Z", "+00:00")
            item["pdt"] = dt.datetime.fromisoformat(moment).timestamp()
        elif line.startswith("#EXTINF:"):
            item["duration"] = float(line[8:].rstrip(","))
        elif line.startswith("#EXT-X-BYTERANGE:"):
            size, offset = line[17:].split("@")
            item["range"] = (int(offset), int(size))
        elif line and not line.startswith("#"):
            entries.append({**item, "uri": line})
            item = {"discontinuity": False}
    return entries


def ffprobe(target: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-1000:]
    return dict(json.loads(out.stdout))


def decode_all(data: bytes) -> tuple[int, int, float]:
    """(video frames, audio frames, seconds) decoded from an MP4: it plays end to end."""
    video = audio = 0
    last = 0.0
    with av.open(io.BytesIO(data), format="mp4") as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
                last = max(last, float(frame.time or 0))
            else:
                audio += 1
    return video, audio, last


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as store:

        async def bucket() -> None:
            client = await store_of(store).start()
            await client.create_bucket()
            await client.close()

        run(bucket())
        yield store


@pytest.fixture(scope="module")
def workers(
    s3: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, WorkerProcess]]:
    """`a` runs cam (recorded) and plain (not); `b` runs only other, with a small spool."""
    base = tmp_path_factory.mktemp("recording-workers")
    started: dict[str, WorkerProcess] = {}
    try:
        started["a"] = WorkerProcess(
            [recorded("cam"), camera_stream("plain", SYNTHETIC)], base / "a", 1, env=s3.env()
        ).start()
        small = {**s3.env(), "CAMSTREAM_RECORDING_SPOOL_BYTES": str(700_000)}
        started["b"] = WorkerProcess([recorded("other")], base / "b", 1, env=small).start()
        started["a"].wait_for("cam", phase="Live")
        yield started
    finally:
        for worker in started.values():
            worker.stop()


def test_groups_reach_the_store_as_the_live_segments_own_bytes(
    s3: SeaweedS3, workers: dict[str, WorkerProcess]
) -> None:
    a = workers["a"]
    found = wait(lambda: objects(s3, CAM), 40, "cam's first group in the store")
    key, size = found[0]
    name = layout.parse_object_key(CAM, key)
    assert name is not None and GROUP * 1000 - 600 <= name.duration_ms <= GROUP * 1000 + 2500
    data = run(_get(s3, key, size))
    index = groupfile.parse_trailer(data, size)
    assert len(index.entries) == GROUP // SEGMENT
    # Passthrough: a segment still in the live window is byte for byte in the group.
    matched = 0
    for entry in index.entries:
        live = a.hls_dir / "default" / "cam" / f"seg{entry.sequence}.ts"
        if live.exists():
            assert data[entry.offset : entry.offset + entry.size] == live.read_bytes()
            matched += 1
    assert matched >= 1
    starts = [e.start_ms for e in index.entries]
    assert starts == sorted(starts)
    assert objects(s3, StreamKey("default", "plain")) == []  # not recorded: nothing stored
    assert metric(a, "camstream_recording_uploads_total") >= 1
    # The store's credentials stay in the worker's environment: no log, metric or answer has them.
    seen = a.log() + a.get("/metrics").decode() + a.get("/api/streams").decode()
    seen += a.get("/streams/default/cam/recordings/ranges.json").decode()
    assert s3.secret_key not in seen and s3.access_key not in seen


async def _get(s3: SeaweedS3, key: str, size: int) -> bytes:
    store = await store_of(s3).start()
    try:
        return await store.get_range(key, 0, size)
    finally:
        await store.close()


def test_vod_playlist_of_a_range_plays_from_a_worker_without_the_stream(
    s3: SeaweedS3, workers: dict[str, WorkerProcess]
) -> None:
    a, b = workers["a"], workers["b"]
    wait(lambda: len(objects(s3, CAM)) >= 2, 40, "two groups of cam")
    spans = ranges(b)["ranges"]  # b does not run cam: the store is shared
    assert len(spans) == 1 and spans[0]["end_ms"] - spans[0]["start_ms"] >= 19_000
    start, end = spans[0]["start_ms"], spans[0]["end_ms"]
    entries = vod(b, start, end)
    assert entries == vod(a, start, end)
    assert len(entries) >= 2 * GROUP // SEGMENT - 1
    assert not any(e["discontinuity"] for e in entries)
    pdts = [e["pdt"] for e in entries]
    assert pdts == sorted(pdts) and abs(pdts[0] - start / 1000) < 0.01
    for before, after in itertools.pairwise(entries):
        assert abs(after["pdt"] - (before["pdt"] + before["duration"])) < 0.5  # contiguous
    window = f"from={start / 1000}&to={end / 1000}"
    probe = ffprobe(f"{b.base_url}/streams/default/cam/recordings/index.m3u8?{window}")
    assert {s["codec_name"] for s in probe["streams"]} >= {"h264", "aac"}
    assert abs(float(probe["format"]["duration"]) - (end - start) / 1000) < 2 * SEGMENT
    # A byte range of a group, through the worker (the store stays behind it).
    first = entries[0]
    offset, size = first["range"]
    request = urllib.request.Request(
        f"{b.base_url}/streams/default/cam/recordings/{first['uri']}",
        headers={"Range": f"bytes={offset}-{offset + size - 1}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206 and len(response.read()) == size
        assert response.headers["Content-Range"].startswith(f"bytes {offset}-")


def test_the_live_stream_has_a_dvr_window_to_rewind(
    s3: SeaweedS3, workers: dict[str, WorkerProcess]
) -> None:
    a = workers["a"]
    live = a.playlist("cam")
    text = a.get("/streams/default/cam/dvr.m3u8").decode()
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PLAYLIST-TYPE" not in text  # live
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(uris) > len(live.segments)  # further back than the live window (6 segments)
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(uris)
    # The same media sequence numbers as the live playlist: one timeline.
    first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
    newest_live = live.segments[-1].sequence
    assert first + len(uris) - 1 >= newest_live - 1
    # Its oldest segment is the recorded one, byte for byte.
    oldest = a.get(f"/streams/default/cam/{uris[0]}")
    index_bytes = [run(_get(s3, k, n)) for k, n in objects(s3, CAM)]
    assert any(oldest in data for data in index_bytes)
    probe = ffprobe(f"{a.base_url}/streams/default/cam/dvr.m3u8")
    assert {s["codec_name"] for s in probe["streams"]} >= {"h264", "aac"}


def test_clip_of_a_range_downloads_as_an_mp4_that_decodes(
    workers: dict[str, WorkerProcess],
) -> None:
    a = workers["a"]
    spans = ranges(a)["ranges"]
    start, end = spans[-1]["start_ms"] + 3000, spans[-1]["end_ms"] - 3000
    url = (
        f"{a.base_url}/streams/default/cam/recordings/clip.mp4?from={start / 1000}&to={end / 1000}"
    )
    with urllib.request.urlopen(url, timeout=60) as response:
        disposition = response.headers["Content-Disposition"]
        assert response.headers["Content-Type"] == "video/mp4"
        data = response.read()
    assert re.fullmatch(
        r'attachment; filename="default_cam_\d{8}T\d{6}Z_\d{8}T\d{6}Z\.mp4"', disposition
    )
    video, audio, seconds = decode_all(data)
    wanted = (end - start) / 1000
    # Whole segments: the clip starts at the keyframe before `from`.
    assert wanted - 0.5 <= seconds <= wanted + 2 * SEGMENT
    assert video >= 15 * wanted * 0.9 and audio > 0
    # Refusals that name the problem.
    for query, message in [
        ("from=10&to=5", "after"),
        (f"from={start / 1000}&to={start / 1000 + 7200}", "at most 3600"),
        ("to=10", "from"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{a.base_url}/streams/default/cam/recordings/clip.mp4?{query}")
        assert caught.value.code == 400 and message in caught.value.read().decode()


def test_an_outage_of_the_store_loses_nothing_and_catches_up_in_order(
    s3: SeaweedS3, workers: dict[str, WorkerProcess]
) -> None:
    a, b = workers["a"], workers["b"]
    before = len(objects(s3, CAM))
    s3.stop()
    outage_started = time.time()
    time.sleep(3 * GROUP)  # three groups' worth while the store is away
    assert metric(a, "camstream_recording_pending_groups") >= 2
    assert metric(a, "camstream_recording_spool_bytes") > 0
    assert metric(a, "camstream_recording_upload_lag_seconds") > GROUP
    assert metric(a, "camstream_recording_upload_failures_total") >= 1
    # b's spool bound (700 kB) holds less than the outage: its oldest groups go, counted.
    dropped = wait(
        lambda: metric(b, "camstream_recording_dropped_groups_total"), 20, "b dropping groups"
    )
    assert dropped >= 1 and "dropped" in b.log() and "default/other" in b.log()
    outage_ended = time.time()
    s3.start()
    wait(lambda: metric(a, "camstream_recording_pending_groups") == 0, 60, "a catching up")
    assert metric(a, "camstream_recording_upload_lag_seconds") == 0
    after = objects(s3, CAM)
    assert len(after) >= before + 3
    # No gap: the whole outage is in the store, as one recorded range.
    spans = ranges(a)["ranges"]
    covering = [
        s for s in spans
        if s["start_ms"] < outage_started * 1000 - 2000 and s["end_ms"] > outage_ended * 1000
    ]  # fmt: skip
    assert covering, spans
    # b lost what its spool could not hold, and it shows as a gap.
    wait(lambda: metric(b, "camstream_recording_pending_groups") == 0, 60, "b catching up")
    other = ranges(b, StreamKey("default", "other"))
    assert other["gaps"], other


PROBE = """JSON.stringify(Object.assign({}, window.camstream.recordings, {
  bars: document.querySelectorAll(".timeline-ranges > div").length,
  shown: !document.querySelector("section[data-recordings]").hidden,
  clipHref: document.querySelector('[data-action="clip"]').getAttribute("href")}))"""


def test_player_page_scrubs_the_recorded_timeline_in_chromium(
    workers: dict[str, WorkerProcess],
) -> None:
    a = workers["a"]
    spans = ranges(a)["ranges"]
    at = spans[0]["start_ms"] + 4000
    # The page opened at a moment of the past (#t=), as a click on the timeline does.
    result = play(
        f"{a.base_url}/streams/default/cam/#t={at / 1000}",
        8,
        name="recording-timeline",
        probe=PROBE,
    )
    assert result.started and result.fatal_errors == (), result.errors
    assert result.played >= 5, result
    page = json.loads(result.probe)
    assert page["shown"] and page["bars"] == len(ranges(a)["ranges"]) >= 1
    assert page["mode"] == "vod"
    # hls.js plays the recording's own program date-times: the moment asked for.
    assert at - SEGMENT * 1000 <= page["playing"] <= at + 15_000, page
    assert page["clipHref"].startswith("recordings/clip.mp4?from=")
    assert result.screenshot_path is not None and result.screenshot_path.exists()
    # The clip button's link downloads the minute around the playing moment.
    with urllib.request.urlopen(f"{a.base_url}/streams/default/cam/{page['clipHref']}") as r:
        assert r.headers["Content-Type"] == "video/mp4" and len(r.read()) > 10_000


def test_a_handoff_records_one_timeline_and_a_clip_across_it_decodes(
    s3: SeaweedS3, workers: dict[str, WorkerProcess], tmp_path: Path
) -> None:
    a = workers["a"]
    # The new owner starts the stream while the old one still runs it (make before break).
    c = WorkerProcess([recorded("cam")], tmp_path / "c", 1, env=s3.env()).start()
    workers["c"] = c
    c.wait_for("cam", phase="Live")
    time.sleep(2 * SEGMENT + 1)
    handed_at = time.time()
    a.stop()  # the old owner lets go: its last group is closed and uploaded on the way out
    wait(
        lambda: any(
            s["start_ms"] < handed_at * 1000 - 5000 and s["end_ms"] > handed_at * 1000 + 5000
            for s in ranges(c)["ranges"]
        ),
        60,
        "the recording on both sides of the handoff",
    )
    start, end = round(handed_at * 1000) - 8000, round(handed_at * 1000) + 5000
    entries = vod(c, start, end)
    breaks = [i for i, e in enumerate(entries) if e["discontinuity"]]
    assert len(breaks) == 1, entries  # one change of owner
    writers = [e["uri"].rsplit("-", 1)[0].split("-", 2)[-1] for e in entries]
    assert len(set(writers[: breaks[0]])) == 1 and len(set(writers[breaks[0] :])) == 1
    for before, after in itertools.pairwise(entries):
        end_before = before["pdt"] + before["duration"]
        assert after["pdt"] - end_before <= 1.0, "a gap"  # GAP_MS
        assert end_before - after["pdt"] <= SEGMENT, "a duplicate"  # at most one segment
    url = (
        f"{c.base_url}/streams/default/cam/recordings/clip.mp4?from={start / 1000}&to={end / 1000}"
    )
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    video, audio, seconds = decode_all(data)
    assert 13 - 1 <= seconds <= 13 + 2 * SEGMENT + 1 and audio > 0
    assert video >= 15 * 12


async def _retention_case(s3: SeaweedS3, now_ms: int) -> tuple[list[str], list[str]]:
    from camstream_operator.janitor import RetentionJanitor

    store = await store_of(s3).start()
    hour = 3_600_000
    try:
        cases = [
            (StreamKey("ret", "week"), 168, None),
            (StreamKey("ret", "capped"), 10_000, 3000),
        ]
        for key, hours, cap in cases:
            await store.put(
                layout.stream_prefix(key) + layout.RETENTION_OBJECT, policy_json(hours, cap)
            )
            for age_hours in (400, 200, 2, 1):
                start = now_ms - age_hours * hour
                data = groupfile.pack(
                    str(key), "w", [(b"x" * 1000, Entry(0, 1000, 60_000, start, 1))]
                )
                name = layout.GroupName(key, start, 60_000, "w")
                await store.put(name.object_key, data)
        # A stream without retention.json (not ours to judge) is left alone.
        orphan = layout.GroupName(StreamKey("ret", "orphan"), now_ms - 900 * hour, 60_000, "w")
        await store.put(orphan.object_key, b"y")
        # The operator's janitor, with the clock moved instead of slept.
        janitor = RetentionJanitor(store, leading=lambda: True, clock=lambda: now_ms / 1000)
        result = await janitor.sweep_once()
        assert result is not None and result.without_retention == 1
        left = [i.key async for i in store.objects("ret/") if i.key.endswith(".ts")]
        return left, [orphan.object_key]
    finally:
        await store.close()


def test_retention_deletes_what_is_old_and_nothing_else(s3: SeaweedS3) -> None:
    now_ms = round(time.time() * 1000)
    left, orphans = run(_retention_case(s3, now_ms))
    by_stream: dict[str, list[int]] = {}
    for key in left:
        parts = key.split("/")
        name = layout.parse_object_key(StreamKey(parts[0], parts[1]), key)
        if name is not None:
            by_stream.setdefault(parts[1], []).append(round((now_ms - name.start_ms) / 3_600_000))
    # A week's retention: the 400 h and 200 h old groups went, the 2 h and 1 h stayed.
    assert sorted(by_stream["week"]) == [1, 2]
    # A 3 kB cap: of four 1 kB groups (plus their trailers) the oldest went first.
    assert sorted(by_stream["capped"]) == [1, 2]
    assert orphans[0] in left
