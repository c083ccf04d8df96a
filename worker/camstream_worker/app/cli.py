"""`camstream run` and `camstream demo`: the standalone worker's commands.

Who calls this: the `camstream` command (camstream_cli) adds these parsers
with `add_parsers` and runs the chosen one through `run`. Nothing heavy is
imported until a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from camstream_worker.app import config


def add_parsers(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run streams from CameraStream manifests, no Kubernetes"
    )
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
    config.add_serving_args(run)
    config.add_file_root_arg(run)
    run.set_defaults(run=_run)

    demo = subparsers.add_parser("demo", help="synthetic cameras pushing into a local worker")
    demo.add_argument("--cameras", type=int, default=3, help="RTMP test cameras (FFmpeg)")
    demo.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)"
    )
    config.add_serving_args(demo)
    demo.set_defaults(run=_demo)


def _run(args: argparse.Namespace) -> int:
    from camstream_worker.app.standalone import run_standalone

    return asyncio.run(run_standalone(config.run_config(args)))


def _demo(args: argparse.Namespace) -> int:
    from camstream_worker.app.demo import run_demo

    return asyncio.run(run_demo(config.demo_config(args)))
