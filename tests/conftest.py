"""Shared fixtures: `cli` runs the command in-process; `tiny_run` is a tiny trained run built once per session;
`interrupted_train` trains until a SIGINT early in epoch 2; `workers_collect_first` makes DataLoader workers
collect the garbage they inherit."""

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import vmrnn_cli.training.trainer as train_module
from vmrnn_cli import synthetic
from vmrnn_cli.cli import main
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.options import PrepareOptions
from vmrnn_cli.training.interrupt import Interrupted
from vmrnn_cli.training.loop import train

TINY_MODEL = {
    "arch": "vmrnn-b",
    "patch_size": 4,
    "embed_dim": 8,
    "depths": [1],
    "epochs": 1,
    "batch_size": 8,
    "device": "cpu",
    "seed": 0,
}


@dataclass
class TinyRun:
    tifs: list[Path]  # 30 frames, 20 x 24 px, EPSG:32633, nodata holes
    cube: Path  # 3 -> 2 frames, 16 px windows, split 0.6/0.2/0.2
    run: Path  # a VMRNN-B with embed 8, depth 1, trained for one epoch


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    root = tmp_path_factory.mktemp("tiny_run")
    tifs = synthetic.make_geotiff_series(root / "data", n_frames=30, height=20, width=24)
    cube = root / "cube.zarr"
    prepare(
        [str(p) for p in tifs],
        cube,
        PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(0.6, 0.2, 0.2)),
    )
    train(cube, root / "run", given=TINY_MODEL)
    return TinyRun(tifs, cube, root / "run")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[[list], tuple[int, str, str]]:
    """Run `vmrnn ARGS` in-process through main(); the call returns (exit code, stdout, stderr)."""

    def run(args: list) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["vmrnn", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


@pytest.fixture
def interrupted_train(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, Path, dict], Interrupted]:
    """Train a cube with `given` and send SIGINT at step 1 of epoch 2 (the 6th loss call of a tiny run: 4 train
    steps and 1 validation batch in epoch 1); the call returns the Interrupted, with last.pt saved."""

    def run(cube: Path, run_dir: Path, given: dict) -> Interrupted:
        real = train_module.masked_sse
        calls = {"n": 0}

        def interrupt_on_sixth_call(pred, target):
            calls["n"] += 1
            if calls["n"] == 6:
                os.kill(os.getpid(), signal.SIGINT)
            return real(pred, target)

        monkeypatch.setattr(train_module, "masked_sse", interrupt_on_sixth_call)
        try:
            with pytest.raises(Interrupted) as stop:
                train(cube, run_dir, given=given)
        finally:
            monkeypatch.setattr(train_module, "masked_sse", real)
        return stop.value

    return run


@pytest.fixture
def workers_collect_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DataLoader workers collect garbage as soon as they start, and the test process does not collect on its own:
    a cycle left when the workers fork is then freed in a worker unless `vmrnn train` collected it before."""
    from torch.utils.data._utils import worker

    real = worker._worker_loop

    def collecting_first(*args, **kwargs):
        gc.collect()
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "_worker_loop", collecting_first)
    gc.disable()
    yield
    gc.enable()
