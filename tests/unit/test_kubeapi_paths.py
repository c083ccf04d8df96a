"""The API path builders keep every name inside its own path segment.

A Secret reference named "../../kube-system/secrets/x" once made a worker GET
a Secret of kube-system: the name was pasted into the path. The property: for
any name, the URL the client really requests (after the URL library's own
normalisation, which resolves "." and "..", quoted or not) has the builder's
segments, the last of which decodes back to the name; or the builder refuses.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from camstream import kubeapi

BASE = URL("https://kube.example:6443")


def requested(path: str) -> URL:
    """The URL aiohttp sends for `path` on a session with a base_url."""
    return BASE.join(URL(path))


@settings(max_examples=300, deadline=None)
@given(
    namespace=st.sampled_from(["cams", "kube-system"]),
    name=st.text(alphabet=st.sampled_from("./%2Ee?#a- \\") | st.characters(), max_size=12),
)
def test_a_name_stays_in_its_segment_or_is_refused(namespace: str, name: str) -> None:
    try:
        path = kubeapi.secret_path(namespace, name)
    except kubeapi.BadName:
        assert name in ("", ".", "..") or any("\ud800" <= c <= "\udfff" for c in name)
        return
    url = requested(path)
    segments = url.raw_path.split("/")
    assert segments[:6] == ["", "api", "v1", "namespaces", namespace, "secrets"], url
    assert len(segments) == 7, url
    assert unquote(segments[6]) == name


@pytest.mark.parametrize(
    "attack",
    ["../../kube-system/secrets/x", "..%2F..%2Fkube-system%2Fsecrets%2Fx", "%2E%2E", "x?watch=1"],
)
def test_reported_traversals_stay_in_the_namespace(attack: str) -> None:
    url = requested(kubeapi.secret_path("cams", attack))
    assert url.path.startswith("/api/v1/namespaces/cams/secrets/")
    assert "kube-system" not in url.path.split("/")[4]
    assert url.query_string == ""


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_dot_names_are_refused_by_every_builder(name: str) -> None:
    for build in (
        lambda: kubeapi.secret_path("cams", name),
        lambda: kubeapi.secret_path(name, "x"),
        lambda: kubeapi.configmap_path("cams", name or "."),
        lambda: kubeapi.pod_path(name or "..", "p"),
        lambda: kubeapi.lease_path("cams", name or "."),
        lambda: kubeapi.statefulset_path("cams", name),
        lambda: kubeapi.stream_path(name or "..", "s"),
        lambda: kubeapi.event_path(name),
    ):
        with pytest.raises(kubeapi.BadName):
            build()


def test_ordinary_paths_are_unchanged() -> None:
    assert kubeapi.secret_path("cams", "door-key") == "/api/v1/namespaces/cams/secrets/door-key"
    assert kubeapi.configmap_path("ns") == "/api/v1/namespaces/ns/configmaps"
    assert (
        kubeapi.stream_path("ns", "cam1", status=True)
        == "/apis/camstream.io/v1alpha1/namespaces/ns/camerastreams/cam1/status"
    )
    assert kubeapi.stream_path(None) == "/apis/camstream.io/v1alpha1/camerastreams"
