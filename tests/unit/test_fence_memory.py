"""What an engine keeps of the streams it stopped for their new owners' fences
(fence_memory.py): the tails' bytes are bounded in all and in time, a stream
stopped once the budget is spent reads no tail at all, and the running total
of bytes held is always the sum of what is kept."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.engine import FENCE_MEMORY_SECONDS, Engine
from camstream_worker.fence_memory import FenceMemory
from camstream_worker.outputs.hls.sequence import TAIL_BYTES, Said, TailSegment
from camstream_worker.secrets.static import StaticSecrets

SECONDS, TAIL_SECONDS = 30.0, 4.0


def _fenced(size: int) -> dict[str, Said | None]:
    tail = (TailSegment(9, 2.0, 9, None, True, b"G" * size),) if size else ()
    return {"": Said(9, 100.0, tail), "360p": None}


def _key(i: int) -> StreamKey:
    return StreamKey("cams", f"s{i}")


def _memory(*, tail_bytes: int = 1000, streams: int = 100) -> FenceMemory:
    return FenceMemory(
        seconds=SECONDS, streams=streams, tail_bytes=tail_bytes, tail_seconds=TAIL_SECONDS
    )


def _held(memory: FenceMemory, keys: range, now: float) -> int:
    """The tails' bytes as a new owner's fence would read them."""
    return sum(
        len(t.data)
        for i in keys
        if (fenced := memory.said(_key(i), now))
        for said in fenced.values()
        if said
        for t in said.tail
    )


def test_the_tails_kept_stay_within_the_budget_the_newest_first() -> None:
    memory = _memory(tail_bytes=1000)
    assert memory.tail_room(0.0) == 1000
    for i in range(5):
        memory.remember(_key(i), _fenced(300), 0.0)
    assert _held(memory, range(5), 0.0) == memory.tail_bytes == 900  # three of 300 fit in 1000
    newest, oldest = memory.said(_key(4), 0.0), memory.said(_key(0), 0.0)
    assert newest and newest[""] and newest[""].tail  # the newest keep theirs
    assert oldest and oldest[""] == Said(9, 100.0, ())  # the oldest: numbers only
    assert memory.tail_room(0.0) == 100  # a stream stopped now reads at most this


def test_tails_older_than_their_time_are_dropped_the_numbers_later() -> None:
    memory = _memory()
    memory.remember(_key(0), _fenced(300), 0.0)
    assert memory.tail_room(0.0) == 700
    later = TAIL_SECONDS + 1
    old = memory.said(_key(0), later)
    assert old and old[""] == Said(9, 100.0, ())  # numbers kept, bytes gone
    assert memory.tail_room(later) == 1000 and memory.tail_bytes == 0
    assert memory.said(_key(0), SECONDS + 1) is None and len(memory) == 0


def test_at_most_so_many_streams_the_oldest_forgotten() -> None:
    memory = _memory(streams=3)
    for i in range(5):
        memory.remember(_key(i), _fenced(10), float(i))
    assert [memory.said(_key(i), 4.0) is not None for i in range(5)] == [False] * 2 + [True] * 3
    assert memory.tail_bytes == 30  # the three kept hold theirs; the forgotten two none


def test_a_stream_started_again_is_forgotten_with_its_bytes() -> None:
    memory = _memory()
    memory.remember(_key(0), _fenced(300), 0.0)
    memory.forget(_key(0))
    assert memory.said(_key(0), 0.0) is None and memory.tail_bytes == 0


def test_the_engine_reads_none_once_its_stop_is_too_old(tmp_path: Path) -> None:
    engine = Engine(tmp_path, StaticSecrets())
    engine._stopped.remember(_key(0), _fenced(300), -FENCE_MEMORY_SECONDS - 1)
    assert engine.fence(_key(0)) is None
    assert engine._stopped.tail_room(0.0) == TAIL_BYTES


# A stream's stop (key, tail bytes, seconds since the last event), its new
# start (forget), or a fence reading it.
_events = st.lists(
    st.one_of(
        st.tuples(st.just("stop"), st.integers(0, 9), st.integers(0, 600), st.floats(0, 3)),
        st.tuples(st.just("start"), st.integers(0, 9), st.just(0), st.floats(0, 3)),
        st.tuples(st.just("fence"), st.integers(0, 9), st.just(0), st.floats(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(_events, st.integers(1, 6), st.integers(0, 1500))
def test_the_running_total_is_what_is_held_and_within_every_limit(
    events: list[tuple[str, int, int, float]], streams: int, budget: int
) -> None:
    memory = _memory(tail_bytes=budget, streams=streams)
    now = 0.0
    stopped_at: dict[int, float] = {}
    for kind, i, size, step in events:
        now += step
        if kind == "stop":
            memory.remember(_key(i), _fenced(min(size, memory.tail_room(now))), now)
            stopped_at[i] = now
        elif kind == "start":
            memory.forget(_key(i))
            stopped_at.pop(i, None)
        else:
            fenced = memory.said(_key(i), now)
            if i not in stopped_at or now - stopped_at[i] > SECONDS:
                assert fenced is None
        assert _held(memory, range(10), now) == memory.tail_bytes <= budget
        assert len(memory) <= streams
        for j in range(10):  # a tail never outlives its time
            said = memory.said(_key(j), now)
            if said and said[""] and said[""].tail:
                assert now - stopped_at[j] <= TAIL_SECONDS
