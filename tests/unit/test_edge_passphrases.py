"""The edge's SRT passphrase cache (edge/passphrases.py): answers at once, bounded, refreshed.

Time is a variable; lookups are scheduled into a list and run by the test in
an event loop, so every step is explicit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from camstream.spec import StreamKey
from camstream_worker.edge import passphrases
from camstream_worker.edge.passphrases import PassphraseCache
from camstream_worker.servers.srt.listener import LATER, Publication

GATE = StreamKey("default", "gate")
OLD, NEW = Publication("old-passphrase-0123"), Publication("new-passphrase-0123")


class Bed:
    def __init__(self, **limits: float) -> None:
        self.now = 0.0
        self.answers: dict[StreamKey, Publication | Exception | None] = {GATE: OLD}
        self.fetched: list[StreamKey] = []
        self.scheduled: list[Callable[[], None]] = []
        self.cache = PassphraseCache(
            self.fetch,
            self.scheduled.append,
            clock=lambda: self.now,
            **limits,  # type: ignore[arg-type]
        )

    async def fetch(self, key: StreamKey) -> Publication | None:
        self.fetched.append(key)
        answer = self.answers.get(key)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def run_lookups(self) -> None:
        async def run() -> None:
            while self.scheduled:
                self.scheduled.pop(0)()
            for _ in range(5):
                await asyncio.sleep(0)

        asyncio.run(run())


def test_a_miss_says_later_and_starts_one_lookup_whose_answer_the_retry_gets() -> None:
    bed = Bed()
    assert bed.cache.lookup(GATE) is LATER
    assert bed.cache.lookup(GATE) is LATER  # a second try while it runs: no second lookup
    bed.run_lookups()
    assert bed.fetched == [GATE]
    assert bed.cache.lookup(GATE) == OLD


def test_unknown_streams_are_cached_negative_for_a_while() -> None:
    bed = Bed()
    nosuch = StreamKey("default", "nosuch")
    assert bed.cache.lookup(nosuch) is LATER
    bed.run_lookups()
    assert bed.cache.lookup(nosuch) is None  # the listener makes it fail like a wrong passphrase
    bed.now += passphrases.NEGATIVE_TTL
    assert bed.cache.lookup(nosuch) is LATER  # looked up again: it may have been created


def test_a_rotated_passphrase_is_picked_up_after_the_ttl_and_the_old_one_serves_meanwhile() -> None:
    bed = Bed()
    bed.cache.lookup(GATE)
    bed.run_lookups()
    bed.answers[GATE] = NEW
    bed.now += passphrases.TTL - 1
    assert bed.cache.lookup(GATE) == OLD and not bed.scheduled
    bed.now += 1
    assert bed.cache.lookup(GATE) == OLD  # served while the refresh runs
    bed.run_lookups()
    assert bed.cache.lookup(GATE) == NEW


def test_a_refused_publisher_rereads_its_stream_at_most_once_per_interval() -> None:
    bed = Bed()
    bed.cache.lookup(GATE)
    bed.run_lookups()
    bed.answers[GATE] = NEW
    bed.cache.refused(GATE)
    bed.cache.refused(GATE)
    bed.run_lookups()
    assert bed.fetched == [GATE, GATE]
    assert bed.cache.lookup(GATE) == NEW
    bed.cache.refused(GATE)
    assert not bed.scheduled  # within REFUSED_REFRESH: no read


def test_a_failed_lookup_keeps_the_cached_answer() -> None:
    bed = Bed()
    bed.cache.lookup(GATE)
    bed.run_lookups()
    bed.answers[GATE] = ConnectionError("api down")
    bed.now += passphrases.TTL
    bed.cache.lookup(GATE)
    bed.run_lookups()
    assert bed.cache.lookup(GATE) == OLD
    assert bed.cache.stats()["lookup_failures"] == 1


def test_lookups_in_flight_are_capped_and_the_rest_told_to_retry() -> None:
    bed = Bed(max_lookups=2)
    for name in ("a", "b", "c"):
        assert bed.cache.lookup(StreamKey("default", name)) is LATER
    assert len(bed.scheduled) == 2
    assert bed.cache.stats()["lookups"] == 2 and bed.cache.stats()["lookup_busy"] == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["known", "stranger"]), min_size=1, max_size=60))
def test_strangers_never_evict_known_streams_and_both_tables_stay_bounded(
    who: list[str],
) -> None:
    bed = Bed(max_entries=3, max_negative=2, max_lookups=100)
    known = [StreamKey("default", f"cam{i}") for i in range(5)]
    for key in known:
        bed.answers[key] = OLD
    strangers = 0
    for i, kind in enumerate(who):
        if kind == "known":
            bed.cache.lookup(known[i % len(known)])
        else:
            strangers += 1
            bed.cache.lookup(StreamKey("default", f"x{strangers}"))
        bed.run_lookups()
        stats = bed.cache.stats()
        assert stats["passphrases"] <= 3 and stats["negative"] <= 2
    held = sum(isinstance(bed.cache.lookup(k), Publication) for k in known)
    assert held == min(3, len({i % len(known) for i, k in enumerate(who) if k == "known"}))
