"""The recorder's spool and the uploader, on a real folder (no media, no network).

The recorder groups segments by program date-time and writes them as they
come; a group left open by a killed process is closed from its journal; the
uploader puts groups in order per stream, holds the spool under its bound
and reports each stream's loss once, summarised.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from camstream.recording import groupfile, layout
from camstream.spec import RecordingOptions, StreamKey
from camstream.storage import StoreUnavailable
from camstream.storage.folder import FolderStore
from camstream_worker.outputs.hls.writer import SegmentWritten
from camstream_worker.outputs.recording import service, spool
from camstream_worker.outputs.recording.recorder import Recorder
from camstream_worker.outputs.recording.uploader import Loss, Uploader

KEY = StreamKey("site-a", "door")
T0 = 1_800_000_000.0


def segment(n: int, *, seconds: float = 2.0, start: float = T0, size: int = 1000) -> SegmentWritten:
    return SegmentWritten(
        sequence=100 + n, duration=seconds, size=size, discontinuity=False,
        discontinuity_sequence=0, written_at=start + (n + 1) * seconds,
        data=bytes([n % 256]) * size, started_at=start + n * seconds,
    )  # fmt: skip


def closed(root: Path) -> list[spool.Ready]:
    return spool.ready_groups(root)


def test_groups_close_at_group_seconds_with_the_segments_own_bytes(tmp_path: Path) -> None:
    recorder = Recorder(KEY, RecordingOptions(True, group_seconds=10), tmp_path, writer_name="w0")
    for n in range(12):  # 24 s of 2 s segments: two groups of 10 s, 4 s still open
        recorder.segment(segment(n))
    ready = closed(tmp_path)
    assert [(r.group.start_ms, r.group.duration_ms) for r in ready] == [
        (int(T0 * 1000), 10_000),
        (int(T0 * 1000) + 10_000, 10_000),
    ]
    data = ready[0].path.read_bytes()
    index = groupfile.parse_trailer(data, len(data))
    assert [e.sequence for e in index.entries] == [100, 101, 102, 103, 104]
    for e in index.entries:  # passthrough: each segment's bytes, untouched
        assert data[e.offset : e.offset + e.size] == bytes([e.sequence - 100]) * 1000
    recorder.close()  # the stream stops here: the open group is closed too
    assert len(closed(tmp_path)) == 3
    assert (spool.stream_folder(tmp_path, KEY) / layout.RETENTION_OBJECT).read_bytes() == (
        b'{"maxAgeHours": 168, "maxBytes": null}'
    )


def test_a_group_left_open_by_a_kill_is_closed_from_its_journal(tmp_path: Path) -> None:
    killed = Recorder(KEY, RecordingOptions(True, group_seconds=60), tmp_path, writer_name="w0")
    for n in range(3):
        killed.segment(segment(n))
    # SIGKILL while cutting the fourth: its bytes half written, no journal line.
    [(open_path, _)] = spool.open_groups(tmp_path)
    with open(open_path, "ab") as handle:
        handle.write(b"\x03" * 400)
    with open(open_path.with_suffix(spool.JOURNAL), "ab") as handle:
        handle.write(b"[3000,10")  # the line being written
    Recorder(KEY, RecordingOptions(True), tmp_path, writer_name="w1")  # the stream back here
    [ready] = closed(tmp_path)
    data = ready.path.read_bytes()
    index = groupfile.parse_trailer(data, len(data))
    assert [e.sequence for e in index.entries] == [100, 101, 102]
    assert index.data_size == 3000 and ready.group.duration_ms == 6000
    assert spool.open_groups(tmp_path) == []


class Spy:
    """Records the order of puts into a real store (FolderStore); can be made to fail."""

    def __init__(self, store: FolderStore) -> None:
        self.store = store
        self.puts: list[str] = []
        self.down = False

    async def put(self, key: str, data: bytes) -> None:
        if self.down:
            raise StoreUnavailable("put: EndpointConnectionError")
        self.puts.append(key)
        await self.store.put(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_uploads_in_order_bounded_spool_and_one_loss_report_per_stream(
    tmp_path: Path,
) -> None:
    spool_root, store_root = tmp_path / "spool", tmp_path / "store"
    other = StreamKey("site-a", "yard")
    recorders = [
        Recorder(k, RecordingOptions(True, group_seconds=10), spool_root, writer_name="w0")
        for k in (KEY, other)
    ]
    spy = Spy(FolderStore(store_root))
    spy.down = True
    losses: list[Loss] = []
    uploader = Uploader(
        spool_root, spy, max_spool_bytes=12_000, on_loss=losses.append, clock=lambda: T0 + 100
    )  # type: ignore[arg-type]
    for n in range(30):  # 60 s per stream: six groups of 5 kB each, 60 kB in all
        for recorder in recorders:
            recorder.segment(segment(n))
    assert not await uploader.round()  # the store is down: nothing goes, the spool is cut
    assert sum(loss.groups for loss in losses) == 10  # 12 kB keeps two of twelve 5 kB groups
    assert {loss.key for loss in losses} == {KEY, other} and len(losses) == 2
    assert uploader.stats.dropped_groups == 10 and uploader.stats.upload_lag() > 0
    spy.down = False
    assert await uploader.round()
    starts = [layout.parse_object_key(KEY, k) for k in spy.puts if k.startswith("site-a/door/2")]
    assert [s.start_ms for s in starts if s] == sorted(s.start_ms for s in starts if s)
    assert uploader.stats.pending_groups == 0 and uploader.stats.upload_lag() == 0.0
    assert len([k for k in spy.puts if k.endswith(".ts")]) == 2
    assert f"{layout.stream_prefix(KEY)}{layout.RETENTION_OBJECT}" in spy.puts


async def test_loss_reports_are_summarised_per_stream() -> None:
    posted: list[Loss] = []
    now = [0.0]

    async def post(loss: Loss) -> None:
        posted.append(loss)

    reports = service.LossReports(post, every=600, clock=lambda: now[0])
    for _ in range(5):
        reports(Loss(KEY, 1, 100, 10.0))
    now[0] = 601
    reports(Loss(KEY, 1, 100, 10.0))
    await asyncio.sleep(0)
    assert [(p.groups, p.bytes) for p in posted] == [(1, 100), (5, 500)]


def test_bad_recording_defaults_name_their_variable() -> None:
    with pytest.raises(ValueError, match="CAMSTREAM_RECORDING_DEFAULTS"):
        service.defaults_from_env({"CAMSTREAM_RECORDING_DEFAULTS": '{"default": {"enabled": 3}}'})
    defaults = service.defaults_from_env(
        {"CAMSTREAM_RECORDING_DEFAULTS": '{"default": {"enabled": true}}'}
    )
    assert defaults.default.enabled


async def test_the_uploader_closes_what_a_dead_process_left_open_after_a_while(
    tmp_path: Path,
) -> None:
    spool_root, store = tmp_path / "spool", FolderStore(tmp_path / "store")
    recorder = Recorder(KEY, RecordingOptions(True, group_seconds=60), spool_root, writer_name="w")
    for n in range(3):
        recorder.segment(segment(n))
    [(_, mtime)] = spool.open_groups(spool_root)  # its process is gone: nobody closes it
    now = [mtime + 60]
    uploader = Uploader(spool_root, store, clock=lambda: now[0])
    assert await uploader.round() and spool.open_groups(spool_root)  # too young: left alone
    now[0] = mtime + 121
    assert await uploader.round()
    assert spool.open_groups(spool_root) == []
    [info] = [i async for i in store.objects("site-a/door/2")]
    data = await store.get_range(info.key, 0, info.size)
    assert len(groupfile.parse_trailer(data, len(data)).entries) == 3
