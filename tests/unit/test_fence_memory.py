"""What an engine keeps of the streams it stopped for their new owners' fences
(engine.py): the tails' bytes are bounded in all and in time, and a stream
stopped once the budget is spent reads no tail at all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from camstream.spec import StreamKey
from camstream_worker import engine as engine_module
from camstream_worker.engine import Engine
from camstream_worker.outputs.hls.sequence import TAIL_BYTES, Said, TailSegment
from camstream_worker.secrets.static import StaticSecrets


def _fenced(size: int) -> dict[str, Said | None]:
    tail = (TailSegment(9, 2.0, 9, None, True, b"G" * size),)
    return {"": Said(9, 100.0, tail), "360p": None}


def _kept_bytes(engine: Engine) -> int:
    return sum(
        len(t.data)
        for key in (StreamKey("cams", f"s{i}") for i in range(100))
        if (fenced := engine.fence(key))
        for said in fenced.values()
        if said
        for t in said.tail
    )


def test_the_tails_kept_stay_within_the_budget_the_newest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "FENCE_MEMORY_TAIL_BYTES", 1000)
    engine = Engine(tmp_path, StaticSecrets())
    assert engine._tail_room() == 1000
    for i in range(5):
        engine._remember_stopped(StreamKey("cams", f"s{i}"), _fenced(300))
    assert _kept_bytes(engine) == 900  # three of 300 fit in 1000
    newest = engine.fence(StreamKey("cams", "s4"))
    oldest = engine.fence(StreamKey("cams", "s0"))
    assert newest and newest[""] and newest[""].tail  # the newest keep theirs
    assert oldest and oldest[""] == Said(9, 100.0, ())  # the oldest: numbers only
    assert engine._tail_room() == 100  # a stream stopped now reads at most this


def test_tails_older_than_their_time_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(tmp_path, StaticSecrets())
    engine._remember_stopped(StreamKey("cams", "s0"), _fenced(300))
    assert engine._tail_room() == TAIL_BYTES
    now = time.monotonic()
    later = now + engine_module.FENCE_TAIL_SECONDS + 1
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: later)
    engine._remember_stopped(StreamKey("cams", "s1"), _fenced(0))
    old = engine.fence(StreamKey("cams", "s0"))
    assert old and old[""] == Said(9, 100.0, ())  # numbers kept, bytes gone
