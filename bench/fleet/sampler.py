"""RSS and CPU of the processes under test, sampled once a second.

Who calls this: scenario.py registers the API server, etcd, each operator
replica and a real worker as they start (`watch`), and asks for the peak and
last RSS and the CPU seconds used inside a phase's time window (`stats`).
A thread, not an asyncio task: a busy event loop in the bench (parsing a
watch) must not leave gaps in the samples.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    when: float  # wall clock
    rss: int  # bytes
    cpu: float  # user + system seconds since the process started


@dataclass(frozen=True)
class Stats:
    peak_rss: int
    last_rss: int
    cpu_seconds: float  # used inside the window
    seconds: float  # window length covered by samples

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


class Sampler:
    def __init__(self, period: float = 1.0) -> None:
        self._period = period
        self._procs: dict[str, psutil.Process] = {}
        self._trees: set[str] = set()  # names whose children are summed in
        self.samples: dict[str, list[Sample]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, name: str, pid: int, *, tree: bool = False) -> None:
        """Sample `pid` as `name`; with `tree`, its child processes summed in (a worker's
        engine processes)."""
        with self._lock:
            self._procs[name] = psutil.Process(pid)
            self.samples.setdefault(name, [])
            if tree:
                self._trees.add(name)
        self._sample(name)

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._procs.pop(name, None)

    def _sample(self, name: str) -> None:
        with self._lock:
            proc = self._procs.get(name)
        if proc is None:
            return
        try:
            family = [proc, *proc.children(recursive=True)] if name in self._trees else [proc]
            rss, cpu = 0, 0.0
            for member in family:
                with member.oneshot():
                    times = member.cpu_times()
                    rss += member.memory_info().rss
                    cpu += times.user + times.system
        except psutil.Error:
            if not proc.is_running():
                self.unwatch(name)  # it exited (or was killed on purpose)
            return  # else a child came or went mid-sample: next time
        self.samples[name].append(Sample(time.time(), rss, cpu))

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                names = list(self._procs)
            for name in names:
                self._sample(name)

    def latest(self, name: str) -> Sample | None:
        series = self.samples.get(name) or []
        return series[-1] if series else None

    def stats(self, name: str, start: float, end: float) -> Stats | None:
        """Figures of `name` from samples taken in [start, end]; None if there are none."""
        inside = [s for s in self.samples.get(name, ()) if start <= s.when <= end]
        if not inside:
            return None
        return Stats(
            peak_rss=max(s.rss for s in inside),
            last_rss=inside[-1].rss,
            cpu_seconds=inside[-1].cpu - inside[0].cpu,
            seconds=inside[-1].when - inside[0].when,
        )

    def idle_since(self, name: str, seconds: float, cores: float) -> bool:
        """`name` used under `cores` of CPU over the last `seconds` (enough samples)."""
        series = self.samples.get(name) or []
        now = time.time()
        recent = [s for s in series if s.when >= now - seconds]
        if len(recent) < max(2, int(seconds / self._period) - 1):
            return False
        span = recent[-1].when - recent[0].when
        return span > 0 and (recent[-1].cpu - recent[0].cpu) / span < cores
