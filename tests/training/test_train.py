"""`vmrnn train`: a tiny run end to end, config files, resume == uninterrupted, signals, DDP, bad inputs."""

import csv
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vmrnn_cli.data.cube import open_cube
from vmrnn_cli.io.outputs import MANIFEST
from vmrnn_cli.runtime import set_threads
from vmrnn_cli.training.checkpoint import load_checkpoint
from vmrnn_cli.training.loop import train
from vmrnn_cli.training.recipe import learning_rate

TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu"]
GIVEN = {"embed_dim": 8, "depths": [1], "batch_size": 8, "device": "cpu", "epochs": 2, "seed": 3}


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_learning_rate_warms_up_then_decays() -> None:
    lrs = [learning_rate(step, 100, 1e-3) for step in range(100)]
    assert lrs[0] == pytest.approx(2e-4) and lrs[4] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    assert all(b <= a for a, b in itertools.pairwise(lrs[4:])) and lrs[-1] < 1e-5


def test_train_writes_a_complete_run(cli, tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    code, out, err = cli(["train", tiny_run.cube, "-o", run, *TINY, "--epochs", "2"])
    assert code == 0, err
    assert out.split() == [str(run / name) for name in ("best.pt", "last.pt", "metrics.csv", "config.toml")]
    assert "epoch 2/2" in err
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds"}
    assert all(np.isfinite(float(r["train_loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
    cube = open_cube(tiny_run.cube)
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best.state == {} and last.state["progress"]["epoch"] == 2
    assert last.config["train"]["epochs"] == 2 and last.config["model"]["embed_dim"] == 8
    np.testing.assert_allclose(last.mean, cube.mean)
    np.testing.assert_allclose(last.std, cube.std)
    assert last.spec.grid.shape == (cube.data.sizes["y"], cube.data.sizes["x"])
    assert last.spec.grid.transform == cube.grid.transform and last.spec.grid.crs == cube.grid.crs
    assert last.spec.band_names == cube.band_names and last.spec.nodata == -9999.0
    assert last.spec.time_step_seconds == 16 * 86400
    assert (last.spec.input_frames, last.spec.output_frames, last.spec.window) == (3, 2, 16)
    best_val = min(float(r["val_loss"]) for r in rows)
    assert float(rows[[float(r["val_loss"]) for r in rows].index(best_val)]["val_loss"]) == best_val
    assert "epochs = 2" in (run / "config.toml").read_text()


def test_config_file_then_options(cli, tiny_run, tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('embed_dim = 8\ndepths = [1]\nbatch_size = 16\nepochs = 3\ndevice = "cpu"\nseed = 5\n')
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", "--config", config, "--epochs", "1"])
    assert code == 0, err
    saved = load_checkpoint(tmp_path / "run" / "last.pt").config["train"]
    assert (saved["epochs"], saved["batch_size"], saved["seed"], saved["embed_dim"]) == (1, 16, 5, 8)


def test_resume_after_interrupt_equals_uninterrupted(tiny_run, tmp_path, interrupted_train) -> None:
    train(tiny_run.cube, tmp_path / "straight", given=GIVEN)
    stop = interrupted_train(tiny_run.cube, tmp_path / "resumed", GIVEN)
    assert stop.signum == signal.SIGINT
    progress = load_checkpoint(tmp_path / "resumed" / "last.pt").state["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 1)
    train(tiny_run.cube, tmp_path / "resumed", resume=True, given={"device": "cpu"})
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in straight.model.items():
        torch.testing.assert_close(resumed.model[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    rows = [list(csv.DictReader((tmp_path / d / "metrics.csv").open())) for d in ("straight", "resumed")]
    for a, b in zip(*rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-5)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits(tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmrnn_cli", "train", str(tiny_run.cube), "-o", str(run), *TINY, "--epochs", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    deadline = time.monotonic() + 240
    while not (run / "metrics.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "--resume" in err and out == ""
    progress = load_checkpoint(run / "last.pt").state["progress"]
    assert 1 <= progress["epoch"] < 500
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != MANIFEST]


@pytest.mark.slow
def test_ddp_two_cpu_processes_on_gloo(tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vmrnn_cli",
            "train",
            str(tiny_run.cube),
            "-o",
            str(run),
            *TINY,
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(2 process(es))" in result.stderr and "2 steps per epoch" in result.stderr
    assert result.stdout.split() == [str(run / n) for n in ("best.pt", "last.pt", "metrics.csv", "config.toml")]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    last = load_checkpoint(run / "last.pt")
    assert last.state["progress"]["step"] == 4
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != MANIFEST]


def one_line_error(code: int, err: str, path: Path) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmrnn: error: ") and str(path) in lines[0], err


def test_existing_run_needs_overwrite_or_resume(cli, tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("keep me")
    code, out, err = cli(["train", tiny_run.cube, "-o", run, *TINY, "--epochs", "1"])
    one_line_error(code, err, run)
    assert "--resume" in err and "--overwrite" in err and out == ""
    assert (run / "metrics.csv").read_text() == "keep me" and len(list(run.iterdir())) == 1


def test_resume_without_a_run(cli, tiny_run, tmp_path) -> None:
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", "--resume"])
    one_line_error(code, err, tmp_path / "run" / "last.pt")
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_config(cli, tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    train(tiny_run.cube, run, given={**GIVEN, "epochs": 1})
    capsys.readouterr()
    before = (run / "last.pt").read_bytes()
    code, _, err = cli(["train", tiny_run.cube, "-o", run, "--resume", "--embed-dim", "16"])
    one_line_error(code, err, run / "last.pt")
    assert "--embed-dim 16 differs" in err
    assert (run / "last.pt").read_bytes() == before
    code, out, err = cli(["train", tiny_run.cube, "-o", run, "--resume"])
    assert code == 0 and "training already finished (1 epochs)" in err and str(run / "best.pt") in out
    assert (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("bad", ["not_a_cube", "config"])
def test_bad_cube_or_config_leaves_nothing(cli, tiny_run, tmp_path, bad: str) -> None:
    cube, args = tiny_run.cube, []
    if bad == "not_a_cube":
        cube = tmp_path / "fake.zarr"
        cube.mkdir()
        (cube / "data").write_text("garbage")
        culprit = cube
    else:
        culprit = tmp_path / "run.toml"
        culprit.write_text("epochs = 'many'\n")
        args = ["--config", culprit]
    code, _, err = cli(["train", cube, "-o", tmp_path / "run", *TINY, *args])
    one_line_error(code, err, culprit)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown where there is no GPU")
def test_cuda_without_gpu_is_a_clear_error(cli, tiny_run, tmp_path) -> None:
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", "--device", "cuda"])
    assert code == 1 and "no CUDA GPU" in err
    assert not (tmp_path / "run").exists()


def test_loader_workers_do_not_change_the_result(tiny_run, tmp_path) -> None:
    """The workers share the thread budget (one each); with the training's own threads the same, so is the run."""
    for workers in (0, 2):
        set_threads(1 + workers)
        assert torch.get_num_threads() == 1 + workers
        train(tiny_run.cube, tmp_path / f"w{workers}", given={**GIVEN, "epochs": 1, "workers": workers})
        assert torch.get_num_threads() == 1  # the budget less one thread per worker
    set_threads()
    a, b = (load_checkpoint(tmp_path / f"w{w}" / "last.pt").model for w in (0, 2))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
