"""Which stream an RTMP publish is for (protocols/rtmp/paths.py)."""

from __future__ import annotations

import pytest

from camstream.spec import StreamKey
from camstream_worker.protocols.rtmp import paths

CAM = StreamKey("default", "cam1")


@pytest.mark.parametrize(
    ("app", "stream_name", "expected"),
    [
        ("default/cam1", "s3cret", (CAM, "s3cret")),  # FFmpeg's cut of /default/cam1/s3cret
        ("default", "cam1/s3cret", (CAM, "s3cret")),
        ("default/cam1/s3cret", "", (CAM, "s3cret")),
        ("default/cam1", "?key=s3cret", (CAM, "s3cret")),
        ("default", "cam1?key=s3cret", (CAM, "s3cret")),
        ("default/cam1", "", None),  # no key at all
        ("live", "s3cret", None),  # no namespace/name
        ("a/b/c", "d", None),
    ],
)
def test_publish_target(app: str, stream_name: str, expected: object) -> None:
    assert paths.publish_target(app, stream_name) == expected


def test_stream_of_app() -> None:
    assert paths.stream_of_app("default/cam1") == CAM
    assert paths.stream_of_app("/default/cam1/") == CAM
    assert paths.stream_of_app("default/cam1?key=x") == CAM
    assert paths.stream_of_app("default") is None
