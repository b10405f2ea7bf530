"""The command's contract: version, help, exit codes and one-line errors."""

import re
import subprocess
import sys

import pytest

from vmrnn_cli import __version__


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmrnn_cli", *args], capture_output=True, text=True)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"vmrnn {__version__}"


@pytest.mark.parametrize("command", ["prepare", "train", "predict", "evaluate", "demo"])
def test_help_lists_command(command: str) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert re.search(rf"^\W+{command}\s", result.stdout, re.MULTILINE)


def test_unknown_option_is_usage_error() -> None:
    result = run_cli("--no-such-option")
    assert result.returncode == 2


def test_unexpected_failure_is_one_line(cli, monkeypatch, tmp_path) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line of detail")

    monkeypatch.setattr("vmrnn_cli.data.prepare.prepare", broken)
    code, out, err = cli(["prepare", str(tmp_path / "a.tif"), "-o", str(tmp_path / "cube.zarr")])
    assert code == 1 and out == ""
    assert err == "vmrnn: error: RuntimeError: disk on fire (--debug shows the traceback)\n"
