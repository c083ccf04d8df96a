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
import logging
import os
import sys

import camstream_operator.cli as operator_cli
import camstream_worker.app.cli as standalone_cli
import camstream_worker.cluster.cli as worker_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camstream", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("CAMSTREAM_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)
    # These modules import only argparse-level code; the heavy parts load in run().
    standalone_cli.add_parsers(commands)
    worker_cli.add_parser(commands)
    operator_cli.add_parser(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HLS request would drown the stream events at any real scale.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
