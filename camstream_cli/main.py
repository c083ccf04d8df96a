"""The `camstream` command: one entry point, a subcommand per role.

    camstream run -f streams.yaml   standalone worker fed by manifest files
    camstream demo                  standalone worker + synthetic cameras, prints the page URL
    camstream sign NS/NAME --for 1h a signed playback URL for a stream (spec.playback.auth)
    camstream worker                a worker pod (cluster mode)
    camstream edge                  an ingest edge pod (holds pushed cameras; also camstream-edge)
    camstream operator              the kopf operator

Who calls this: the `camstream` console script (setup.cfg), `python -m
camstream_cli`, and the images' entry points. Each component's command-line
module is imported only when one of its commands runs (all of them only for
`camstream --help`), so the operator never loads the worker or PyAV, and the
worker never loads kopf's handlers. A setting that cannot be used ends the
command with one line naming it and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from camstream import settings

AddParsers = Callable[[Any], None]


def _standalone(commands: Any) -> None:
    from camstream_worker.app import cli

    cli.add_parsers(commands)


def _worker(commands: Any) -> None:
    from camstream_worker.cluster import cli

    cli.add_parser(commands)


def _edge(commands: Any) -> None:
    from camstream_worker.edge import cli

    cli.add_parser(commands)


def _operator(commands: Any) -> None:
    from camstream_operator import cli

    cli.add_parser(commands)


# Which component adds each command, in the order `camstream --help` lists them.
COMMANDS: dict[str, AddParsers] = {
    "run": _standalone,
    "demo": _standalone,
    "sign": _standalone,
    "worker": _worker,
    "edge": _edge,
    "operator": _operator,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="camstream", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--log-level",
        type=settings.log_level,
        default=None,
        help="DEBUG, INFO, WARNING, ERROR (default: $CAMSTREAM_LOG_LEVEL, else INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    try:
        for add in _adders_for(argv):
            add(commands)
        args = parser.parse_args(argv)
        level = args.log_level or settings.from_env(
            "CAMSTREAM_LOG_LEVEL", settings.log_level, "INFO", flag="--log-level"
        )
    except settings.SettingError as exc:
        parser.error(str(exc))  # exits 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HLS request would drown the stream events at any real scale.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except settings.SettingError as exc:
        print(f"camstream {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _adders_for(argv: list[str]) -> list[AddParsers]:
    """The components the command line needs: the one of its command, or all for --help."""
    before = argparse.ArgumentParser(add_help=False)
    before.add_argument("--log-level")
    _, rest = before.parse_known_args(argv)
    if rest and rest[0] in COMMANDS:
        return [COMMANDS[rest[0]]]
    return list(dict.fromkeys(COMMANDS.values()))  # each component once, in order
