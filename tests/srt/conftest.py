"""Fixtures for the SRT tests: the media tests' standalone worker, and libsrt present."""

from __future__ import annotations

import pytest

from camstream_worker.srt import libsrt
from tests.media.conftest import start_worker

__all__ = ["start_worker"]


@pytest.fixture(autouse=True)
def _libsrt_installed() -> None:
    # Not a skip: scripts/deps/apt-media.txt installs it, and a machine without it must fail.
    assert libsrt.available(), "libsrt is not installed (scripts/deps/apt-media.txt)"
