"""The event-loop probe (camstream/looplag.py): lag, and the stall our own code caused."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given
from hypothesis import strategies as st

from camstream import looplag


@given(st.floats(0, 10), st.one_of(st.none(), st.floats(0, 10)))
def test_a_stall_is_the_lag_less_the_wait_for_a_cpu(lag: float, waited: float | None) -> None:
    stall = looplag.stall_of(lag, waited)
    assert 0 <= stall <= lag
    assert stall == (lag if waited is None else max(0.0, lag - waited))


def test_this_thread_has_a_run_queue_clock_on_linux() -> None:
    first = looplag.runqueue_wait()
    assert first is not None and first >= 0


async def test_blocking_code_shows_as_a_stall_a_busy_cpu_does_not() -> None:
    seen: list[tuple[float, float]] = []
    idle_cpu = probe(seen, waited=lambda: 0.0)
    task = asyncio.create_task(idle_cpu.run())
    await asyncio.sleep(0.06)
    time.sleep(0.3)  # noqa: ASYNC251 - hold the loop on purpose: our own stall
    await asyncio.sleep(0.12)
    task.cancel()
    assert max(stall for _, stall in seen) >= 0.25

    seen.clear()
    clock = iter([0.0, 0.0, 0.0, 10.0] + [10.0] * 100)  # the thread waited 10 s for a CPU
    busy = probe(seen, waited=lambda: next(clock))
    task = asyncio.create_task(busy.run())
    await asyncio.sleep(0.06)
    time.sleep(0.3)  # noqa: ASYNC251 - the same block, but the thread "waited" meanwhile
    await asyncio.sleep(0.12)
    task.cancel()
    assert max(lag for lag, _ in seen) >= 0.25
    assert max(stall for _, stall in seen) < 0.05  # the wait explains the lag


def probe(seen: list[tuple[float, float]], waited):  # type: ignore[no-untyped-def]
    return looplag.LoopLag(period=0.05, observe=lambda lag, stall: seen.append((lag, stall)),
                           waited=waited)  # fmt: skip
