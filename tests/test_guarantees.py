"""The README's guarantees, each injected into the real CLI in a subprocess: kill, Ctrl-C and SIGTERM at several
points, a full disk (a file size limit), two writers, --overwrite onto foreign files and onto the inputs, a
diverging run, hostile paths. Every test checks the exit code, the single stderr line and the disk afterwards."""

import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from vmrnn_cli import synthetic
from vmrnn_cli.io.outputs import MANIFEST
from vmrnn_cli.training.checkpoint import load_checkpoint, save_checkpoint

VMRNN = [sys.executable, "-m", "vmrnn_cli"]
TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu"]
PREPARE = ["--input-frames", "3", "--output-frames", "2", "--window", "16", "--stride", "8", "--split", "0.6,0.2,0.2"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*VMRNN, *map(str, args)], capture_output=True, text=True, env=env(), timeout=300, **kwargs)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [*VMRNN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )


def wait_for(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """Poll until `ready()` holds; the test fails if the process ends first (the point was never reached)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the process ended before the fault point: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the fault point was not reached in time"
        time.sleep(0.002)


def one_error_line(result, code: int, *parts: str, log_lines: bool = False) -> str:
    """The exit code and the one line saying what failed (after `train`'s log lines where `log_lines`)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("vmrnn: ")]
    assert result.returncode == code and len(errors) == 1, (result.returncode, result.stderr[-3000:])
    assert errors[0] == lines[-1] and (log_lines or len(lines) == 1), result.stderr[-3000:]
    assert "Traceback" not in result.stderr and all(part in lines[-1] for part in parts), lines[-1]
    return lines[-1]


def beside(target: Path) -> list[str]:
    """vmrnn's files beside an output: its lock and temporary files (a clean exit leaves none)."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def temp_exists(target: Path):
    return lambda: any(p.name.startswith(f".{target.name}.tmp-") for p in target.parent.iterdir())


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[str]:
    """A series long enough that writing its cube takes a while (the kill points need time to be hit)."""
    root = tmp_path_factory.mktemp("series")
    return [str(p) for p in synthetic.make_geotiff_series(root / "in", n_frames=60, height=96, width=96)]


def test_kill_during_prepare_then_the_rerun_cleans_up_and_matches(series, tmp_path) -> None:
    out = tmp_path / "cube.zarr"
    proc = start("prepare", *series, "-o", out, *PREPARE)
    wait_for(proc, temp_exists(out))
    proc.kill()
    proc.wait()
    assert not out.exists() and beside(out)  # the killed writer's lock / temp store is still there
    result = run("prepare", *series, "-o", out, *PREPARE)
    assert result.returncode == 0, result.stderr
    assert beside(out) == []  # the next run cleared them
    clean = tmp_path / "clean.zarr"
    assert run("prepare", *series, "-o", clean, *PREPARE).returncode == 0
    a, b = xr.open_zarr(out), xr.open_zarr(clean)
    np.testing.assert_array_equal(a["data"].values, b["data"].values)
    np.testing.assert_array_equal(a["windows_train"].values, b["windows_train"].values)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_prepare_leaves_nothing(series, tmp_path, sig) -> None:
    out = tmp_path / "cube.zarr"
    proc = start("prepare", *series, "-o", out, *PREPARE)
    wait_for(proc, temp_exists(out))
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    one_error_line(result, 128 + sig, f"stopped by {signal.Signals(sig).name}")
    assert stdout == "" and not out.exists() and beside(out) == []


def test_kill_during_predict_then_the_rerun_succeeds(tiny_run, tmp_path) -> None:
    out = tmp_path / "forecast"
    args = ["predict", "-m", tiny_run.run, "--horizon", "40", *tiny_run.tifs, "-o", out]
    proc = start(*args)
    wait_for(proc, temp_exists(out))
    proc.kill()
    proc.wait()
    assert not out.exists()
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 40 and beside(out) == []


def test_sigterm_during_predict_leaves_nothing(tiny_run, tmp_path) -> None:
    out = tmp_path / "forecast.nc"
    proc = start("predict", "-m", tiny_run.run, "--horizon", "40", *tiny_run.tifs, "-o", out)
    wait_for(proc, lambda: (tmp_path / f".{out.name}.lock").exists())
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), 143, "SIGTERM")
    assert list(tmp_path.iterdir()) == []


def test_kill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_run, tmp_path) -> None:
    """--checkpoint-every a few ms: last.pt is written after (almost) every step; a kill loses at most that."""
    args = ["train", tiny_run.cube, *TINY, "--epochs", "2", "--seed", "5"]
    straight = tmp_path / "straight"
    assert run(*args, "-o", straight).returncode == 0  # in a process like the killed one's: same threads, same sums
    killed = tmp_path / "killed"
    proc = start(*args, "-o", killed, "--checkpoint-every", "0.0001")
    wait_for(
        proc,
        lambda: (killed / "last.pt").exists() and load_checkpoint(killed / "last.pt").state["progress"]["step"] >= 2,
    )
    proc.kill()
    proc.wait()
    progress = load_checkpoint(killed / "last.pt").state["progress"]
    assert progress["step"] < 2 * 4, "the kill came after the run's end"
    result = run("train", tiny_run.cube, "-o", killed, "--resume", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(killed / "last.pt")
    for name, tensor in a.model.items():
        assert torch.equal(tensor, b.model[name]), name
    rows = list(csv.DictReader((killed / "metrics.csv").open()))
    assert [float(r["train_loss"]) for r in rows] == [m["train_loss"] for m in b.state["progress"]["metrics"]]
    assert [p.name for p in killed.iterdir() if p.name.startswith(".")] == [MANIFEST]


def _limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("output", ["forecast", "forecast.nc", "forecast.zarr"])
def test_full_disk_is_one_line_and_leaves_nothing(tiny_run, tmp_path, output) -> None:
    out = tmp_path / output
    result = run("predict", "-m", tiny_run.run, "--horizon", "8", *tiny_run.tifs, "-o", out, preexec_fn=_limited(3000))
    one_error_line(result, 1, f"file size limit exceeded writing {out}")
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_output(tiny_run, tmp_path) -> None:
    out = tmp_path / "forecast"
    first = start("predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out)
    wait_for(first, lambda: (tmp_path / ".forecast.lock").exists())
    first.send_signal(signal.SIGSTOP)  # holds the lock while the second writer starts
    try:
        second = run("predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out, "--overwrite")
    finally:
        first.send_signal(signal.SIGCONT)
    one_error_line(second, 1, f"{out}: another vmrnn process is writing it")
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert len(stdout.split()) == 3 and beside(out) == []


def test_two_trainings_of_one_run(tiny_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    first = start("train", tiny_run.cube, "-o", run_dir, *TINY, "--epochs", "1")
    wait_for(first, lambda: (tmp_path / ".run.lock").exists())
    first.send_signal(signal.SIGSTOP)
    try:
        second = run("train", tiny_run.cube, "-o", run_dir, *TINY, "--epochs", "1", "--overwrite")
    finally:
        first.send_signal(signal.SIGCONT)
    one_error_line(second, 1, f"{run_dir}: another vmrnn process is writing it")
    assert first.wait(timeout=240) == 0


def test_overwrite_never_removes_inputs_or_foreign_files(tiny_run, tmp_path) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(Path(tiny_run.tifs[0]).parent, scene)
    before = sorted(p.name for p in scene.iterdir())
    result = run(
        "predict", "-m", tiny_run.run, "--horizon", "2", *sorted(scene.glob("*.tif")), "-o", scene, "--overwrite"
    )
    one_error_line(result, 1, f"{scene}: holds the input")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", mine, "--overwrite")
    one_error_line(result, 1, f"holds {mine / 'notes.txt'}, which vmrnn did not write")
    assert sorted(p.name for p in scene.iterdir()) == before and (mine / "notes.txt").read_text() == "keep me"
    nc = tmp_path / "other.nc"
    nc.write_text("someone else's file")
    one_error_line(
        run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", nc, "--overwrite"),
        1,
        f"{nc}: was not written by vmrnn",
    )
    assert nc.read_text() == "someone else's file"


def test_overwrite_replaces_vmrnns_own_output(tiny_run, tmp_path) -> None:
    out = tmp_path / "forecast"
    assert run("predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out).returncode == 0
    result = run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*.tif"))) == 2 and beside(out) == []


def test_a_diverging_run_stops_with_exit_1_and_saves_nothing_non_finite(tiny_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = run("train", tiny_run.cube, "-o", run_dir, *TINY, "--epochs", "3", "--lr", "1e6")
    one_error_line(result, 1, "training diverged at epoch", "--lr", log_lines=True)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).exists():
            ckpt = load_checkpoint(run_dir / name)
            assert all(torch.isfinite(t).all() for t in ckpt.model.values())


def test_predict_refuses_a_checkpoint_with_non_finite_weights(tiny_run, tmp_path) -> None:
    ckpt = load_checkpoint(tiny_run.run / "best.pt")
    first = next(iter(ckpt.model))
    ckpt.model[first] = torch.full_like(ckpt.model[first], float("nan"))
    save_checkpoint(ckpt, tmp_path / "nan.pt")
    result = run("predict", "-m", tmp_path / "nan.pt", "--horizon", "2", *tiny_run.tifs, "-o", tmp_path / "f")
    one_error_line(result, 1, "holds non-finite weights")
    assert not (tmp_path / "f").exists()


def test_hostile_paths(tiny_run, tmp_path) -> None:
    odd = tmp_path / "données 2024 (copy)"
    shutil.copytree(Path(tiny_run.tifs[0]).parent, odd)
    out = tmp_path / "sortie ü" / "f c.nc"
    result = run("predict", "-m", tiny_run.run, "--horizon", "2", str(odd / "*.tif"), "-o", out)
    assert result.returncode == 0 and result.stdout == f"{out}\n", result.stderr
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    one_error_line(
        run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", link),
        1,
        f"{link}: is a symbolic link",
    )
    one_error_line(
        run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", "."), 1, "is the current directory"
    )
    blocker = tmp_path / "a file"
    blocker.write_text("")
    one_error_line(
        run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", blocker / "f.nc"),
        1,
        "is not a directory",
    )
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder; the in-process sibling below runs")
def test_unwritable_folder_is_refused_before_any_compute(tiny_run, tmp_path) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run("predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", locked / "f.nc")
        one_error_line(result, 1, f"{locked / 'f.nc'}: cannot be written, {locked} is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_unwritable_folder_check_in_process(cli, tiny_run, tmp_path, monkeypatch) -> None:
    """The same check as above where the tests run as root: the folder reported not writable, as to a user."""
    locked = tmp_path / "read-only"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real(path, mode))
    code, out, err = cli(["predict", "-m", tiny_run.run, "--horizon", "2", *tiny_run.tifs, "-o", locked / "f.nc"])
    assert code == 1 and out == ""
    assert err == f"vmrnn: error: {locked / 'f.nc'}: cannot be written, {locked} is not writable (permission denied)\n"
    assert list(locked.iterdir()) == []
