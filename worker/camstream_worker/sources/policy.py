"""What a pulled source may reach: the addresses it must not, and the folders a file may be in.

Who calls this: the command line of each mode builds one `SourcePolicy`
(standalone: app/config.py; a worker pod: cluster/cli.py, from the chart's
values) and hands it to the engine, which gives it to every source through
egress.py. Pure values and checks, no I/O beyond `os.path.realpath`.

- `denied_networks`: a stream's author chooses its URL, and the worker sits
  inside the cluster's network, so without a limit a CameraStream could make
  the worker fetch the cloud's metadata service (169.254.169.254: instance
  credentials) or anything else it can reach. The default deny-list is the
  link-local and metadata addresses, and the "this host" addresses that
  reach the worker itself; operators add their own ranges (the chart's
  worker.sources.denyCIDRs, `--source-deny-cidrs`). An address is denied
  when it, or the IPv4 address it embeds (IPv4-mapped, NAT64, 6to4), is in
  a listed network.
- `file_roots`: `protocol: file` exists in standalone mode only; a path is
  allowed when its real path (symbolic links and ".." resolved) is inside
  one of these folders. No roots: no local files at all (a cluster).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED_CIDRS: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata (169.254.169.254)
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",  # "this host": 0.0.0.0 reaches the worker's own ports
    "::/128",  # the IPv6 unspecified address, likewise
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_cidrs(text: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of CIDRs ("" is an empty list); ValueError names a bad item."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a CIDR such as 169.254.0.0/16 or fe80::/10"
            ) from None
    return tuple(networks)


DEFAULT_DENIED: tuple[IPNetwork, ...] = parse_cidrs(",".join(DEFAULT_DENIED_CIDRS))
DENY_VARIABLE = "CAMSTREAM_SOURCE_DENY_CIDRS"
DENY_FLAG_HELP = (
    "comma-separated CIDRs pulled sources may not connect to ('' for none; default: "
    f"${DENY_VARIABLE}, else {','.join(DEFAULT_DENIED_CIDRS)})"
)


def cidrs_argument(text: str) -> tuple[IPNetwork, ...]:
    """parse_cidrs for argparse, whose message then names the bad item."""
    try:
        return parse_cidrs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _embedded_ipv4(address: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 address stands for, when it stands for one."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Where pulled sources may go; picklable, so engine processes get a copy."""

    denied_networks: tuple[IPNetwork, ...] = DEFAULT_DENIED
    file_roots: tuple[Path, ...] = field(default=())

    @classmethod
    def build(
        cls, *, denied: Iterable[IPNetwork] = DEFAULT_DENIED, file_roots: Iterable[Path] = ()
    ) -> SourcePolicy:
        """A policy with its file roots resolved to real paths once, at start."""
        return cls(tuple(denied), tuple(Path(os.path.realpath(root)) for root in file_roots))

    def denies(self, address: IPAddress) -> bool:
        """Whether a source may not connect to `address`."""
        candidates = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(
            candidate in network
            for candidate in candidates
            for network in self.denied_networks
            if network.version == candidate.version
        )

    def file_allowed(self, real_path: str) -> bool:
        """Whether an already-resolved real path lies inside one of the file roots."""
        path = Path(real_path)
        return any(path == root or root in path.parents for root in self.file_roots)
