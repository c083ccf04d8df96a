"""Settings of `camstream run` and `camstream demo`, parsed once into typed values.

Who calls this: app/cli.py adds the flags (`add_serving_args`) and turns the
parsed command line and the environment into a `RunConfig` or `DemoConfig`;
standalone.py and demo.py receive them and never read flags or the
environment. Flags are checked by argparse; environment defaults by
camstream.settings, so a bad value names its variable and flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from camstream import settings
from camstream_worker.servers.http import settings as http_settings
from camstream_worker.servers.rtmp.limits import Limits
from camstream_worker.servers.srt.limits import SrtLimits
from camstream_worker.sources import policy
from camstream_worker.sources.policy import SourcePolicy

DEFAULT_HLS_DIR = Path("/tmp/camstream-hls")


@dataclass(frozen=True, slots=True)
class Serving:
    """Where a standalone worker listens and writes, and how many engine processes it runs."""

    host: str
    http_port: int
    rtmp_port: int
    processes: int
    hls_dir: Path
    sources: SourcePolicy  # what pulled sources may reach, which files they may read
    rtmp: Limits = field(default_factory=Limits)  # CAMSTREAM_RTMP_* (limits.py)
    # The SRT ingest's UDP port; None: no SRT listener (SRT pull works regardless).
    srt_port: int | None = None
    srt: SrtLimits = field(default_factory=SrtLimits)  # CAMSTREAM_SRT_* (servers/srt/limits.py)
    # Viewer auth, CORS, the admin surface and connection limits of the HTTP port.
    http: http_settings.HttpSettings = field(default_factory=http_settings.HttpSettings)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """`camstream run`: streams from manifest files."""

    files: tuple[Path, ...]
    secrets_dir: Path | None
    serving: Serving


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """`camstream demo`: test cameras pushing into a local worker."""

    cameras: int
    seconds: float  # 0 = until Ctrl-C
    serving: Serving


def usable_cpus() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0))


def add_serving_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--rtmp-port", type=int, default=1935)
    parser.add_argument(
        "--srt-port",
        type=int,
        default=None,
        help="UDP port of the SRT ingest (off unless given; 8890 is the usual one; "
        "0 picks a free port); pushed `protocol: srt` streams need it",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="engine processes, one per core by default (1 = everything in one process)",
    )
    parser.add_argument(
        "--hls-dir",
        type=Path,
        default=None,
        help=f"where HLS files are written (default: $CAMSTREAM_HLS_DIR, else {DEFAULT_HLS_DIR})",
    )
    http_settings.add_arguments(parser)
    parser.add_argument(
        "--source-deny-cidrs",
        type=policy.cidrs_argument,
        default=None,
        help=policy.DENY_FLAG_HELP,
    )


def add_file_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file-root",
        dest="file_roots",
        action="append",
        type=Path,
        default=[],
        help="folder that `protocol: file` streams may read (repeatable; "
        "default: the folders of the -f manifests)",
    )


def serving(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    *,
    file_roots: tuple[Path, ...] = (),
) -> Serving:
    hls_dir = args.hls_dir
    if hls_dir is None:
        hls_dir = settings.from_env(
            "CAMSTREAM_HLS_DIR", settings.path, DEFAULT_HLS_DIR, flag="--hls-dir", environ=environ
        )
    denied = args.source_deny_cidrs
    if denied is None:
        denied = settings.from_env(
            policy.DENY_VARIABLE,
            policy.parse_cidrs,
            policy.DEFAULT_DENIED,
            flag="--source-deny-cidrs",
            environ=environ,
        )
    return Serving(
        host=args.host,
        http_port=args.http_port,
        rtmp_port=args.rtmp_port,
        processes=usable_cpus() if args.processes is None else args.processes,
        hls_dir=hls_dir,
        sources=SourcePolicy.build(denied=denied, file_roots=file_roots),
        rtmp=Limits.from_env(environ),
        srt_port=args.srt_port,
        srt=SrtLimits.from_env(environ),
        http=http_settings.from_args(args, environ),
    )


def run_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RunConfig:
    files = tuple(args.files)
    # `protocol: file` reads what the manifests' author put beside them, unless told otherwise.
    roots = tuple(args.file_roots) or tuple(p if p.is_dir() else p.parent for p in files)
    return RunConfig(
        files=files, secrets_dir=args.secrets_dir, serving=serving(args, environ, file_roots=roots)
    )


def demo_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> DemoConfig:
    return DemoConfig(cameras=args.cameras, seconds=args.seconds, serving=serving(args, environ))
