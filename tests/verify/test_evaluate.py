"""`vmrnn evaluate`: the JSON schema, scores checked against direct computations, plots and CLI errors."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from vmrnn_cli.data.cube import open_cube
from vmrnn_cli.forecast.rollout import CPU_BATCH
from vmrnn_cli.options import EvaluateOptions
from vmrnn_cli.training.checkpoint import load_checkpoint
from vmrnn_cli.verify import evaluate as evaluate_module
from vmrnn_cli.verify.evaluate import evaluate

SCORES = {"mse", "mae", "rmse", "ssim", "psnr"}
METHODS = ("model", "persistence", "climatology")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmrnn_cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    result, paths = evaluate(
        tiny_run.run,
        tiny_run.cube,
        EvaluateOptions(device="cpu", batch_size=3),
        json_path=out / "ev.json",
        plot_path=out / "scores.png",
    )
    return result, paths, out


def _windows(cube, part):
    """(n, T, C, P, P) physical-unit windows of a split, read directly from the cube."""
    data = cube.data.values
    size, frames = cube.window, cube.input_frames + cube.output_frames
    return np.stack([data[t0 : t0 + frames, :, y0 : y0 + size, x0 : x0 + size] for t0, y0, x0 in cube.windows(part)])


def test_json_schema(evaluated):
    _, paths, out = evaluated
    data = json.loads((out / "ev.json").read_text())
    assert data["lead_times"] == [1, 2]
    for method in METHODS:
        assert set(data[method]) == SCORES
        for score in SCORES:
            assert len(data[method][score]) == 2
            assert all(isinstance(v, float) for v in data[method][score])
    assert data["skill"] == pytest.approx([1 - m / p for m, p in zip(data["model"]["mse"], data["persistence"]["mse"])])
    assert data["part"] == "test" and data["windows"] == len(open_cube(data["cube"]).windows("test"))
    assert data["batch_size"] == 3
    assert paths == [out / "ev.json", out / "scores.png", out / "scores_panel.png"]
    for png in paths[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_match_direct_computation(tiny_run, evaluated):
    result, _, _ = evaluated
    cube = open_cube(tiny_run.cube)
    n_in = cube.input_frames
    windows = _windows(cube, "test")
    context, truth = windows[:, :n_in], windows[:, n_in:]
    # Persistence: the last context frame (pixels missing there fall back to earlier frames).
    last = context[:, -1].copy()
    for t in range(n_in - 2, -1, -1):
        last = np.where(np.isnan(last), context[:, t], last)
    persistence = np.repeat(last[:, None], cube.output_frames, axis=1)
    # Climatology: the per-pixel mean of the training frames.
    start, stop = cube.split["train"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels never observed in training
        normal = np.nanmean(cube.data.values[start:stop], axis=0)
    climatology = np.stack(
        [normal[:, y0 : y0 + cube.window, x0 : x0 + cube.window] for _, y0, x0 in cube.windows("test")]
    )[:, None].repeat(cube.output_frames, axis=1)
    # The model, rolled out directly on normalised windows.
    ckpt = load_checkpoint(tiny_run.run)
    mean, std = ckpt.mean.reshape(1, 1, -1, 1, 1), ckpt.std.reshape(1, 1, -1, 1, 1)
    net = ckpt.build_model().eval()
    with torch.no_grad():
        out = net(torch.from_numpy(np.nan_to_num((context - mean) / std)).float(), cube.output_frames)
    model = out[:, -cube.output_frames :].numpy() * std + mean
    valid = np.isfinite(truth) & np.isfinite(persistence) & np.isfinite(climatology)
    assert not valid.all()  # nodata holes are left out
    for name, forecast in (("model", model), ("persistence", persistence), ("climatology", climatology)):
        for lead in range(cube.output_frames):
            err = (forecast - truth)[:, lead][valid[:, lead]]
            assert result[name]["mse"][lead] == pytest.approx(np.mean(err**2), rel=1e-4)
            assert result[name]["mae"][lead] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
            assert result[name]["rmse"][lead] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-4)
            assert 0.0 < result[name]["ssim"][lead] <= 1.0


def test_default_batch_on_cpu_gives_the_same_scores(tiny_run, evaluated):
    batched, _, _ = evaluated
    result, _ = evaluate(tiny_run.run, tiny_run.cube, EvaluateOptions(device="cpu"))
    assert result["batch_size"] == CPU_BATCH and result["windows"] > 3  # batches of 3 split the windows differently
    for method in METHODS:
        for score in SCORES:
            assert np.allclose(result[method][score], batched[method][score]), (method, score)
    assert np.allclose(result["skill"], batched["skill"])


@pytest.mark.parametrize(("fits", "used"), [(2, 2), (10**6, evaluate_module.MAX_AUTO_WINDOWS)])
def test_default_batch_is_probed_on_windows_and_used(tiny_run, monkeypatch, fits, used):
    # The GPU's rule, on the CPU: auto_batch_size gets windows of (input frames, bands, patch, patch) rolled out over
    # the output frames with nothing reserved, and the windows go through the model that many at a time, at most
    # MAX_AUTO_WINDOWS.
    probes, batches = [], []
    real_rollout = evaluate_module.rollout

    def fake_auto_batch_size(net, tile_shape, horizon, device, reserve):
        probes.append((tile_shape, horizon, device.type, reserve))
        return fits

    def counting_rollout(net, frames, horizon, device):
        batches.append(len(frames))
        return real_rollout(net, frames, horizon, device)

    monkeypatch.setattr(evaluate_module, "auto_batch_size", fake_auto_batch_size)
    monkeypatch.setattr(evaluate_module, "rollout", counting_rollout)
    result, _ = evaluate(tiny_run.run, tiny_run.cube, EvaluateOptions(device="cpu"))
    cube = open_cube(tiny_run.cube)
    size = cube.window
    assert probes == [((cube.input_frames, len(cube.band_names), size, size), cube.output_frames, "cpu", 0)]
    assert result["batch_size"] == used and max(batches) == min(used, result["windows"])
    assert sum(batches) == result["windows"]


def test_cli_rejects_batch_size_below_one(tiny_run, cli):
    code, out, err = cli(["evaluate", tiny_run.cube, "-m", tiny_run.run, "--batch-size", "0"])
    assert code == 2 and out == ""  # a usage error
    assert err.strip() == "vmrnn: error: --batch-size: must be a positive integer, got 0"


def test_cli_json_to_stdout_and_table_on_stderr(tiny_run):
    result = run_cli(
        "evaluate", str(tiny_run.cube), "-m", str(tiny_run.run), "--json", "--part", "val", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["part"] == "val" and set(data["model"]) == SCORES
    assert data["batch_size"] == CPU_BATCH  # not given: the CPU's default
    assert "skill" in result.stderr and "persistence" in result.stderr


def test_cli_refuses_existing_output(tiny_run, tmp_path):
    target = tmp_path / "ev.json"
    target.write_text("keep me")
    result = run_cli("evaluate", str(tiny_run.cube), "-m", str(tiny_run.run), "-o", str(target))
    assert result.returncode == 1
    assert result.stderr.strip() == f"vmrnn: error: {target}: already exists; pass --overwrite to replace it"
    assert target.read_text() == "keep me"


def test_cli_rejects_non_png_plot_and_foreign_checkpoint(tiny_run, tmp_path):
    result = run_cli("evaluate", str(tiny_run.cube), "-m", str(tiny_run.run), "--plot", str(tmp_path / "s.jpg"))
    assert result.returncode == 1 and "must name a .png file" in result.stderr
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = run_cli("evaluate", str(tiny_run.cube), "-m", str(bogus))
    assert result.returncode == 1 and "not a vmrnn checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
