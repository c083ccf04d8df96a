"""Settings parsed once into typed values, with errors that name the setting
(camstream/settings.py, camstream_worker/app/config.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from camstream import settings
from camstream_worker.app import config


def test_a_bad_number_names_the_variable_and_the_flag() -> None:
    environ = {"CAMSTREAM_PROCESSES": "four"}
    with pytest.raises(settings.SettingError) as caught:
        settings.from_env(
            "CAMSTREAM_PROCESSES", settings.count, 1, flag="--processes", environ=environ
        )
    message = str(caught.value)
    assert message.startswith("CAMSTREAM_PROCESSES=four: ")
    assert "--processes" in message
    assert caught.value.name == "CAMSTREAM_PROCESSES"


@pytest.mark.parametrize(
    ("parse", "good", "value", "bad"),
    [
        (settings.count, "3", 3, ["0", "-1", "four", "1.5", ""]),
        (settings.seconds, "2.5", 2.5, ["-1", "soon", "nan", ""]),
        (settings.log_level, "debug", "DEBUG", ["LOUD", ""]),
        (settings.path, "/var/hls", Path("/var/hls"), [""]),
        (settings.boolean, "True", True, ["", "2", "maybe"]),
        (settings.boolean, "off", False, []),
    ],
)
def test_parsers(parse, good: str, value: object, bad: list[str]) -> None:
    assert parse(good) == value
    for text in bad:
        with pytest.raises(ValueError):
            parse(text)


def test_unset_means_the_default() -> None:
    assert settings.from_env("CAMSTREAM_PROCESSES", settings.count, 7, environ={}) == 7


def _serving_args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_serving_args(parser)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def test_serving_config_takes_the_hls_dir_from_the_environment_when_no_flag_says() -> None:
    assert config.serving(_serving_args(), {}).hls_dir == config.DEFAULT_HLS_DIR
    environ = {"CAMSTREAM_HLS_DIR": "/srv/hls"}
    assert config.serving(_serving_args(), environ).hls_dir == Path("/srv/hls")
    flagged = _serving_args(hls_dir=Path("/flag"))
    assert config.serving(flagged, environ).hls_dir == Path("/flag")
    assert config.serving(_serving_args(), {}).processes == config.usable_cpus()
