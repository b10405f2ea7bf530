"""Train VMRNN on a prepared cube: AdamW with warm-up + cosine, masked MSE, checkpoints, resume, DDP.

One process trains on one device; under `torchrun --nproc-per-node N` every process trains on its
share of the windows (DistributedSampler) and rank 0 alone writes the run directory. Options that
only change how a step runs: per-frame activation checkpointing (memory; unless `grad_checkpoint` says otherwise,
turned on by itself, and recorded in the run's config, where the first full-size step or the CUDA-graph capture
runs out of GPU memory), the model's forward through torch.compile (speed) and, on one CUDA GPU (by default there;
eager with a warning where that capture fails), the model's forward and backward captured once as CUDA graphs and
replayed every full-size step (speed).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vmrnn_cli.capacity import check_batch_fits
from vmrnn_cli.data.cube import Cube, CubeSpec, open_cube
from vmrnn_cli.data.dataset import WindowDataset
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.lock import locked
from vmrnn_cli.options import TrainConfig, read_toml, resolve_config, to_toml, validated
from vmrnn_cli.runtime import pick_device
from vmrnn_cli.training.checkpoint import Checkpoint, load_checkpoint
from vmrnn_cli.training.distributed import Ranks, log
from vmrnn_cli.training.interrupt import stop_on_signals
from vmrnn_cli.training.recipe import fit_cube_to_head
from vmrnn_cli.training.rundir import (
    RUN_FILES,
    check_run_dir,
    clear_leftovers,
    resumed_config,
    start_run,
    write_metrics,
)
from vmrnn_cli.training.step_modes import use_cuda_graphs
from vmrnn_cli.training.trainer import Trainer


def train(
    cube_path: Path,
    run_dir: Path,
    config_file: Path | None = None,
    given: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Train (or with `resume`, continue) a run in run_dir; returns the files written (rank 0; [] elsewhere).

    `given` holds the options set on the command line; they override the TOML config file.
    Raises Interrupted after checkpointing on SIGINT/SIGTERM.
    """
    given = dict(given or {})
    run_dir = Path(run_dir)
    ranks = Ranks.from_env()
    if ranks.main:
        check_run_dir(run_dir, Path(cube_path), overwrite, resume)
    with locked(run_dir) if ranks.main else nullcontext():
        if ranks.main:
            clear_leftovers(run_dir)
        return _start(cube_path, run_dir, config_file, given, resume, ranks)


def _start(
    cube_path: Path, run_dir: Path, config_file: Path | None, given: dict[str, Any], resume: bool, ranks: Ranks
) -> list[Path]:
    """Read the config and the cube, check them against a resumed run, set up the device(s), train."""
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt")
        from_file = read_toml(config_file) if config_file else {}
        config = resumed_config(ckpt, {**from_file, **given})
        config = validated(asdict(config), config_file, set(from_file) - set(given))
    else:
        config = resolve_config(config_file, given)
    cube = fit_cube_to_head(open_cube(cube_path), config)  # sigmoid head: the cube's own values, checked in [0, 1]
    spec = cube.spec()
    if ckpt is not None and ckpt.spec != spec:
        now, then = spec.to_json(), ckpt.spec.to_json()
        changed = sorted(k for k in now if now[k] != then.get(k))
        raise VmrnnError(f"{cube_path}: differs from the cube this run was trained on ({', '.join(changed)})")
    frames = cube.input_frames + cube.output_frames
    check_batch_fits(config.batch_size, frames * len(cube.band_names) * cube.window**2 * 4, "windows")
    train_set, val_set = WindowDataset(cube, "train"), WindowDataset(cube, "val")
    if len(train_set) == 0:
        raise VmrnnError(
            f"{cube_path}: no training windows (prepare it with a longer train split or a smaller `window`)"
        )
    device = pick_device(config.device, ranks.local_rank)
    graphs = use_cuda_graphs(config, device, ranks.world)
    workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
    if ranks.world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cube, run_dir, config, spec, ckpt, ranks, device, graphs, workers, train_set, val_set)
    finally:
        if ranks.world > 1:
            dist.destroy_process_group()


def _train(
    cube: Cube,
    run_dir: Path,
    config: TrainConfig,
    spec: CubeSpec,
    ckpt: Checkpoint | None,
    ranks: Ranks,
    device: torch.device,
    graphs: bool,
    workers: int,
    train_set: WindowDataset,
    val_set: WindowDataset,
) -> list[Path]:
    trainer = Trainer(cube, run_dir, config, spec, ranks, device, workers, train_set, val_set)
    if ckpt is not None:
        trainer.restore(ckpt)
    written = [run_dir / name for name in RUN_FILES] if ranks.main else []
    if trainer.state.epoch >= config.epochs:
        log(ranks, f"{run_dir}: training already finished ({config.epochs} epochs)")
        return written
    modes = trainer.step_modes(graphs)  # before the run directory is written: a refused capture leaves no run behind
    if ranks.main:
        if ckpt is None:
            start_run(run_dir, to_toml(config))
        else:
            write_metrics(run_dir, trainer.state.metrics)  # as last.pt has them, whatever a kill left
    log(
        ranks,
        f"training {config.arch} on {device} ({ranks.world} process(es))"
        + "".join(f", {m}" for m in modes)
        + f": {len(train_set)} train / {len(val_set)} val windows, {trainer.steps_per_epoch} steps per epoch"
        + ("" if len(val_set) else "; no validation windows, best.pt follows the training loss"),
    )
    with stop_on_signals() as received:
        trainer.run(received)
    return written
