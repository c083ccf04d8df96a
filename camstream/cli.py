"""The `camstream` command: one entry point, a subcommand per role.

    camstream run -f streams.yaml   standalone worker fed by manifest files
    camstream demo                  standalone worker + synthetic cameras, prints the page URL
    camstream worker                a worker pod (cluster mode)
    camstream operator              the kopf operator

Each role's code is imported only when that role runs, so the operator image
never loads PyAV and the worker never loads kopf's handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import camstream_operator.cli as operator_cli
import camstream_worker.cluster.cli as worker_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camstream", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("CAMSTREAM_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run streams from CameraStream manifests, no Kubernetes")
    run.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        type=Path,
        required=True,
        help="YAML file or folder of CameraStream (and Secret) manifests; repeatable",
    )
    run.add_argument(
        "--secrets-dir",
        type=Path,
        help="folder of Secrets as files: <dir>/<namespace>/<secret>/<key>",
    )
    _add_serving_args(run)

    demo = commands.add_parser("demo", help="synthetic cameras pushing into a local worker")
    demo.add_argument("--cameras", type=int, default=3, help="RTMP test cameras (FFmpeg)")
    demo.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)"
    )
    _add_serving_args(demo)

    # Both modules import only argparse-level code; the heavy parts load in run().
    worker_cli.add_parser(commands)
    operator_cli.add_parser(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HLS request would drown the stream events at any real scale.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "run":
        from camstream_worker.standalone import run_standalone

        return asyncio.run(
            run_standalone(
                args.files,
                hls_dir=args.hls_dir,
                host=args.host,
                http_port=args.http_port,
                rtmp_port=args.rtmp_port,
                processes=args.processes,
                secrets_dir=args.secrets_dir,
            )
        )
    if args.command == "demo":
        from camstream_worker.demo import run_demo

        return asyncio.run(
            run_demo(
                cameras=args.cameras,
                seconds=args.seconds,
                hls_dir=args.hls_dir,
                host=args.host,
                http_port=args.http_port,
                rtmp_port=args.rtmp_port,
                processes=args.processes,
            )
        )
    return int(args.run(args) or 0)


def _add_serving_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--rtmp-port", type=int, default=1935)
    parser.add_argument(
        "--processes",
        type=int,
        default=usable_cpus(),
        help="engine processes, one per core by default (1 = everything in one process)",
    )
    parser.add_argument(
        "--hls-dir",
        type=Path,
        default=Path(os.environ.get("CAMSTREAM_HLS_DIR", "/tmp/camstream-hls")),
    )


def usable_cpus() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
