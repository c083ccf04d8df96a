"""The wire contract (camstream/wire.py): names and formats both components and users rely on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from camstream import wire


def test_the_published_names() -> None:
    # Changing any of these breaks clusters, dashboards or players in the field.
    assert (wire.API_GROUP, wire.API_VERSION, wire.KIND, wire.PLURAL) == (
        "camstream.io",
        "v1alpha1",
        "CameraStream",
        "camerastreams",
    )
    assert wire.PARTITION_LABEL_PREFIX == "camstream.io/partition-"
    assert wire.PARTITIONS_ANNOTATION == "camstream.io/partitions"
    assert wire.heartbeat_lease_name("w-0") == "w-0-heartbeat"


def test_stream_url_paths() -> None:
    assert wire.stream_path("ns", "cam") == "/streams/ns/cam/"
    assert wire.stream_path("ns", "cam", "720p/index.m3u8") == "/streams/ns/cam/720p/index.m3u8"
    assert wire.playlist_path("site-a", "cam-1") == "/streams/site-a/cam-1/index.m3u8"
    assert wire.api_stream_path("ns", "cam") == "/api/streams/ns/cam"


@given(st.sets(st.integers(0, 300)))
def test_ranges_round_trip(partitions: set[int]) -> None:
    assert wire.decode_ranges(wire.encode_ranges(partitions)) == partitions


def test_ranges_are_compact() -> None:
    assert wire.encode_ranges({5, 0, 1, 2, 7, 8}) == "0-2,5,7-8"


@given(st.sets(st.tuples(st.integers(0, 4096), st.integers(1, 10**9))))
def test_confirmed_round_trip(pairs: set[tuple[int, int]]) -> None:
    assert wire.decode_confirmed(wire.encode_confirmed(pairs)) == pairs
    assert wire.decode_confirmed("garbage,1.x,,2.3") == {(2, 3)}
