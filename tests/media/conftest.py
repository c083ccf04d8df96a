"""Fixtures for the real-media tests: a standalone worker process per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.media.worker_process import WorkerProcess


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `camstream run` on the manifests; two engine processes unless told otherwise."""
    started: list[WorkerProcess] = []

    def start(
        manifests: list[dict[str, Any]],
        processes: int = 2,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        workdir = tmp_path / f"worker{len(started)}"
        worker = WorkerProcess(manifests, workdir, processes, extra_args, env=env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
