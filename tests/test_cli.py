"""Command-line parsing (SPEC §2.3) and exit codes (SPEC §2.4)."""

import subprocess
import sys

import pytest

from rmldnn_py import __version__
from rmldnn_py.cli import main, parse_args
from rmldnn_py.errors import UsageError


@pytest.mark.parametrize("argv", [
    ["--config=./c.json"],
    ["--config=", "./c.json"],
    ["--config", "./c.json"],
])
def test_config_spellings(argv):
    assert parse_args(argv) == {"config": "./c.json"}


@pytest.mark.parametrize("argv", [
    ["--app=pde", "--config=", "./x.json"],
    ["--config=", "./x.json", "--app=pde"],
    ["--app", "pde", "--config", "./x.json"],
    ["--app=", "pde", "--config=./x.json"],
])
def test_app_any_order(argv):
    assert parse_args(argv) == {"config": "./x.json", "app": "pde"}


@pytest.mark.parametrize("argv, message", [
    (["--config="], "option --config needs a value"),
    (["--config=a.json", "--config=b.json"], "option --config given twice"),
    (["--cfg=a.json"], "unknown option '--cfg=a.json'"),
    (["--config=a.json", "extra"], "unexpected argument 'extra'"),
])
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv)


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "usage: rmldnn" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"rmldnn_py {__version__}\n"


def test_missing_config_is_usage_error(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rmldnn: error: missing --config")
    assert "Traceback" not in err


def test_invalid_app(capsys):
    assert main(["--app=foo", "--config=x.json"]) == 2
    assert "invalid --app 'foo'" in capsys.readouterr().err


def test_obj_app_is_supported(capsys):
    """--app=obj (any case) is implemented (tests/test_obj_cli.py): the run gets as far as
    reading the config."""
    assert main(["--app=OBJ", "--config=missing_config.json"]) != 0
    err = capsys.readouterr().err
    assert "rmldnn: error: missing_config.json: cannot read config file" in err
    assert "not supported" not in err


def test_gan_app_is_supported(capsys):
    """--app=gan (any case) is implemented: the run gets as far as reading the config."""
    assert main(["--app=GAN", "--config=missing_config.json"]) != 0
    err = capsys.readouterr().err
    assert "missing_config.json" in err.splitlines()[0]
    assert "not supported" not in err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "rmldnn_py", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"rmldnn_py {__version__}"
