"""What pulled sources may reach: the deny-list and the file roots (sources/policy.py)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camstream_worker.sources.policy import (
    DEFAULT_DENIED,
    DEFAULT_DENIED_CIDRS,
    SourcePolicy,
    parse_cidrs,
)

POLICY = SourcePolicy()


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack metadata
        "169.254.170.2",  # ECS task metadata
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "fe80::1",
        "0.0.0.0",  # reaches the worker itself on Linux
        "::",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_metadata_and_link_local_addresses_are_denied_by_default(address: str) -> None:
    assert POLICY.denies(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.20", "127.0.0.1", "::1", "8.8.8.8"])
def test_ordinary_camera_addresses_are_allowed_by_default(address: str) -> None:
    assert not POLICY.denies(ipaddress.ip_address(address))


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_judged_alike_in_every_ipv6_disguise(
    address: ipaddress.IPv4Address,
) -> None:
    disguises = [
        ipaddress.IPv6Address(f"::ffff:{address}"),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address)),
    ]
    for disguise in disguises:
        assert POLICY.denies(disguise) == POLICY.denies(address), disguise


def test_cidr_lists_parse_and_name_a_bad_item() -> None:
    assert parse_cidrs("") == ()
    assert parse_cidrs(" 10.0.0.0/8 , fe80::/10,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fe80::/10"),
    )
    assert parse_cidrs(",".join(DEFAULT_DENIED_CIDRS)) == DEFAULT_DENIED
    with pytest.raises(ValueError, match="'metadata' is not a CIDR"):
        parse_cidrs("10.0.0.0/8,metadata")
    assert not SourcePolicy(denied_networks=()).denies(ipaddress.ip_address("169.254.169.254"))


def test_file_roots_hold_real_paths_only(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    policy = SourcePolicy.build(file_roots=[tmp_path / "recordings" / "sub" / ".."])
    assert policy.file_roots == (Path(os.path.realpath(root)),)
    assert policy.file_allowed(str(root / "a.mp4"))
    assert policy.file_allowed(str(root / "sub" / "b.mp4"))
    assert not policy.file_allowed(
        str(tmp_path / "recordings-old" / "a.mp4")
    )  # a prefix is not a parent
    assert not policy.file_allowed(str(tmp_path / "elsewhere" / "a.mp4"))
    assert not policy.file_allowed("/etc/passwd")
    assert not SourcePolicy().file_allowed(str(root / "a.mp4"))  # no roots: no files at all
