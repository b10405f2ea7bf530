"""`vmrnn demo`: the whole job end to end in under 5 minutes, beating persistence; refuses a non-empty output."""

import json
import subprocess
import sys
import time

import matplotlib.image
import pytest
import rasterio


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmrnn_cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_demo_end_to_end_beats_persistence(tmp_path):
    out = tmp_path / "demo"
    started = time.perf_counter()
    result = run_cli("demo", "-o", str(out), "--device", "cpu")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 300, f"demo took {elapsed:.0f} s, more than 5 minutes"
    written = result.stdout.split()
    assert written[:3] == [str(out / "evaluation.json"), str(out / "scores.png"), str(out / "forecast.png")]
    data = json.loads((out / "evaluation.json").read_text())
    assert {"lead_times", "model", "persistence", "climatology", "skill"} <= set(data)
    forecasts = written[3:]
    assert data["lead_times"] == list(range(1, len(forecasts) + 1))  # every lead time the demo forecasts is scored
    assert data["skill"][0] > 0, f"the demo's model does not beat persistence at lead 1: {data['skill']}"
    assert sum(data["skill"]) / len(data["skill"]) > 0, f"mean skill <= 0: {data['skill']}"
    assert forecasts and all(p.endswith(".tif") for p in forecasts)
    with rasterio.open(forecasts[0]) as src:
        assert src.crs.to_epsg() == 32633
    for png in ("scores.png", "forecast.png"):
        image = matplotlib.image.imread(out / png)
        assert image.ndim == 3 and image[..., :3].std() > 0.05, png  # a picture, not a blank page


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run_cli("demo", "-o", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"vmrnn: error: {tmp_path}: already exists; pass --overwrite to replace it"
    result = run_cli("demo", "-o", str(tmp_path), "--overwrite")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"vmrnn: error: {tmp_path}: holds {tmp_path / 'notes.txt'}, which vmrnn did not write; --overwrite "
        "replaces only vmrnn's own outputs"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
