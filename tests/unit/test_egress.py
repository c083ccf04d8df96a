"""The egress checks on their own: the proxy's request parsing, address checks, pinned URLs.

The proxy and the checks against real servers and a real worker are in
tests/security/test_sources_egress.py.
"""

from __future__ import annotations

import ipaddress

import pytest

from camstream_worker.errors import UNREACHABLE, SourceUnreachable
from camstream_worker.sources.egress import Egress
from camstream_worker.sources.egress_proxy import BadRequest, destination
from camstream_worker.sources.policy import SourcePolicy, parse_cidrs


def test_the_two_request_forms_ffmpeg_sends_a_proxy() -> None:
    assert destination("GET http://cam.example:8080/live/x.ts?t=1 HTTP/1.1") == (
        "GET",
        "cam.example",
        8080,
        "/live/x.ts?t=1",
    )
    assert destination("GET http://10.0.0.5/ HTTP/1.1") == ("GET", "10.0.0.5", 80, "/")
    assert destination("CONNECT cam.example:443 HTTP/1.1") == ("CONNECT", "cam.example", 443, "")
    assert destination("CONNECT [fd00:ec2::254]:443 HTTP/1.1")[1] == "fd00:ec2::254"


@pytest.mark.parametrize(
    "line",
    [
        "GET /relative HTTP/1.1",  # not a proxy request
        "GET ftp://x/ HTTP/1.1",
        "GET file:///etc/passwd HTTP/1.1",
        "CONNECT cam.example HTTP/1.1",
        "CONNECT :443 HTTP/1.1",
        "GET http://x:99999/ HTTP/1.1",
        "hello",
    ],
)
def test_anything_else_is_refused(line: str) -> None:
    with pytest.raises(BadRequest):
        destination(line)


async def test_a_denied_literal_is_refused_before_any_connection() -> None:
    egress = Egress(SourcePolicy(denied_networks=parse_cidrs("127.0.0.2/32,169.254.0.0/16")))
    for host in ("127.0.0.2", "169.254.169.254", "::ffff:127.0.0.2"):
        with pytest.raises(SourceUnreachable) as caught:
            await egress.address_for(host, 80)
        assert str(caught.value) == UNREACHABLE
        assert "deny-list" in caught.value.detail
    assert await egress.address_for("127.0.0.1", 80) == "127.0.0.1"


async def test_a_name_is_resolved_once_and_the_url_carries_the_checked_address() -> None:
    egress = Egress(SourcePolicy())
    pinned = await egress.pinned_url("rtsp://localhost:8554/cam1?track=1")
    host = pinned.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    assert ipaddress.ip_address(host).is_loopback
    assert pinned.endswith(":8554/cam1?track=1")
    # A name that resolves to a denied address is refused like the address.
    loopback = Egress(SourcePolicy(denied_networks=parse_cidrs("127.0.0.0/8,::1/128")))
    with pytest.raises(SourceUnreachable):
        await loopback.pinned_url("rtsp://localhost/cam1")
    with pytest.raises(SourceUnreachable) as caught:
        await egress.address_for("no-such-host.invalid", 554)
    assert "did not resolve" in caught.value.detail
