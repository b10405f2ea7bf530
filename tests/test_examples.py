"""examples/: the paper-preset configs, the Python example and the cron script (run twice)."""

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rasterio

from vmrnn_cli.options import resolve_config
from vmrnn_cli.training.checkpoint import build_network

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "arch", "channels", "size", "parameters"),
    [
        ("moving_mnist_vmrnn_d.toml", "vmrnn-d", 1, 64, 9_674_113),
        ("taxibj_vmrnn_b.toml", "vmrnn-b", 2, 32, 2_579_970),
        ("kth_vmrnn_b.toml", "vmrnn-b", 1, 128, 1_214_721),
    ],
)
def test_preset_configs_are_valid_train_configs(name, arch, channels, size, parameters):
    config = resolve_config(EXAMPLES / "configs" / name, {})
    assert config.arch == arch
    net = build_network(config.model_config(), channels, size)
    assert sum(p.numel() for p in net.parameters()) == parameters  # the official implementation's counts


def test_python_example_runs():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_models.py"), "--steps", "2", "--size", "16"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "forecast (16, 4, 1, 16, 16)" in result.stdout


def _cron(inputs: Path, run: Path, root: Path, **env: str) -> subprocess.CompletedProcess:
    settings = {
        **os.environ,
        "N": "3",
        "HORIZON": "2",
        "VMRNN": f"{sys.executable} -m vmrnn_cli",
        **env,
    }
    return subprocess.run(
        ["bash", str(EXAMPLES / "cron_forecast.sh"), str(inputs), str(run), str(root)],
        capture_output=True,
        text=True,
        env=settings,
    )


def test_cron_script_forecasts_once_and_never_overwrites(tiny_run, tmp_path):
    inputs = tmp_path / "incoming"
    inputs.mkdir()
    for tif in tiny_run.tifs:
        shutil.copy(tif, inputs)
    (inputs / "notes.txt").write_text("not a raster")
    root = tmp_path / "forecasts"

    first = _cron(inputs, tiny_run.run, root)
    assert first.returncode == 0, (root / "cron_forecast.log").read_text()
    out = root / sorted(tiny_run.tifs)[-1].stem  # named after the newest input, not the day it ran
    written = sorted(out.glob("*.tif"))
    assert len(written) == 2
    newest = max(datetime.strptime(p.stem.split("_")[-1], "%Y-%m-%d") for p in tiny_run.tifs)
    with rasterio.open(written[0]) as src:
        valid = datetime.strptime(src.tags()["TIFFTAG_DATETIME"], "%Y:%m:%d %H:%M:%S")
    assert valid == newest + timedelta(days=16)  # the forecast starts after the newest file
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written}

    second = _cron(inputs, tiny_run.run, root)
    assert second.returncode == 3
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.glob("*.tif"))} == before
    log = (root / "cron_forecast.log").read_text()
    assert "done:" in log and "refusing to overwrite a finished forecast" in log


def test_cron_script_passes_on_vmrnn_failure(tiny_run, tmp_path):
    inputs = tmp_path / "incoming"
    inputs.mkdir()
    for tif in tiny_run.tifs[-3:]:
        shutil.copy(tif, inputs)
    root = tmp_path / "forecasts"
    result = _cron(inputs, tmp_path / "no_such_run", root)
    assert result.returncode == 1
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["cron_forecast.log"]
    log = (root / "cron_forecast.log").read_text()
    assert "no such checkpoint file or run directory" in log and "failed with exit code 1" in log
