"""Settings from the environment, parsed once into typed values; an error names the setting.

Who calls this: the command line (camstream_cli) for CAMSTREAM_LOG_LEVEL, the
worker's typed configuration (camstream_worker/app/config.py) and its
cluster-mode command (cluster/cli.py) for the defaults they take from the
environment. A bad value stops the command before anything starts, with one
line naming the variable and the flag it stands for:

    CAMSTREAM_PROCESSES=four: not a whole number of at least 1 (the default of --processes)

where `int("four")` used to end the process with a bare ValueError.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting whose value cannot be used; the message names it."""

    def __init__(self, name: str, value: str, expected: str, flag: str | None = None) -> None:
        where = f" (the default of {flag})" if flag else ""
        super().__init__(f"{name}={value}: {expected}{where}")
        self.name = name


# Parsers: text in, a typed value out, ValueError (with what was expected) otherwise.


def count(text: str) -> int:
    """A whole number of at least 1 (processes, cameras)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("not a whole number of at least 1")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ValueError("not a number of seconds (0 or more)")
    return value


def boolean(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off, in any case."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("not true or false")


def path(text: str) -> Path:
    if not text:
        raise ValueError("empty: a path is needed")
    return Path(text)


def log_level(text: str) -> str:
    """A logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL), in any case."""
    level = text.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError("not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


def from_env(
    name: str,
    parse: Callable[[str], T],
    default: T,
    *,
    flag: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """The typed value of environment variable `name`, or `default` when unset.

    `flag`: the command-line option whose default this is, for the message.
    """
    text = (os.environ if environ is None else environ).get(name)
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError as exc:
        raise SettingError(name, text, str(exc), flag) from None
