"""Train VMRNN on a prepared cube: AdamW with warm-up + cosine, masked MSE, checkpoints, resume, DDP.

One process trains on one device; under `torchrun --nproc-per-node N` every process trains on its
share of the windows (DistributedSampler) and rank 0 alone writes the run directory. Options that
only change how a step runs: per-frame activation checkpointing (memory), the model's forward through
torch.compile (speed) and, on one CUDA GPU (by default there; eager with a warning where that capture fails),
the model's forward and backward captured once as CUDA graphs and replayed every full-size step (speed).
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from vmrnn_cli.data.cube import Cube, CubeSpec, open_cube
from vmrnn_cli.data.dataset import WindowDataset
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import TrainConfig, read_toml, resolve_config, to_toml, validated
from vmrnn_cli.runtime import pick_device
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, load_checkpoint, save_checkpoint
from vmrnn_cli.training.distributed import Ranks, agreed_signal, sum_ranks
from vmrnn_cli.training.interrupt import Interrupted, stop_on_signals
from vmrnn_cli.training.loss import masked_sse
from vmrnn_cli.training.recipe import learning_rate, make_optimizer
from vmrnn_cli.training.rundir import RUN_FILES, check_new_run, resumed_config, write_metrics
from vmrnn_cli.training.step_modes import compiled_forward, graphed_unless_failed, use_cuda_graphs


@dataclass
class RunState:
    """Where training stands; saved in `last.pt` so that `--resume` continues exactly."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch
    step: int = 0  # optimizer steps completed in total
    sse: float = 0.0  # running sums of the current epoch (this rank); kept on the device between checkpoints
    count: float = 0.0
    samples: int = 0
    seconds: float = 0.0
    best: float = math.inf
    metrics: list[dict[str, Any]] = field(default_factory=list)


def _forward_loss(
    model: Callable[[Tensor, int], Tensor], batch: Tensor, cube: Cube, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Sum of squared errors and valid-pixel count over every predicted next frame of a batch of windows."""
    inputs = torch.nan_to_num(batch[:, : cube.input_frames])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(inputs, cube.output_frames)
    return masked_sse(out, batch[:, 1:])


def _batches(loader: DataLoader) -> Iterator:
    """The loader's batches; with worker processes, the garbage is collected first. Workers are forked, and a
    worker that collects an inherited cycle holding CUDA tensors or graphs (left by a CUDA-graph capture, or by
    earlier work in the same process) dies with a CUDA initialization error."""
    if loader.num_workers:
        gc.collect()
    return iter(loader)


def _validate(
    net: torch.nn.Module,
    dataset: WindowDataset,
    cube: Cube,
    config: TrainConfig,
    ranks: Ranks,
    device: torch.device,
    workers: int,
) -> float:
    """Masked MSE over all validation windows (all ranks together); NaN when there are none."""
    if len(dataset) == 0:
        return math.nan
    sampler = DistributedSampler(dataset, ranks.world, ranks.rank, shuffle=False)
    loader = DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers, generator=torch.Generator()
    )
    sse, count = 0.0, 0.0
    net.eval()
    with torch.no_grad():
        for batch in _batches(loader):
            s, c = _forward_loss(net, batch.to(device), cube, device)
            sse, count = sse + float(s), count + float(c)
    net.train()
    sse, count = sum_ranks([sse, count], ranks, device)
    return sse / count if count else math.nan


def _progress(enabled: bool) -> Progress | nullcontext:
    if not enabled:
        return nullcontext()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} samples/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _log(ranks: Ranks, message: str) -> None:
    if ranks.main:
        print(message, file=sys.stderr, flush=True)


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
    ckpt = None
    if resume:
        if not (run_dir / "last.pt").exists():
            raise VmrnnError(f"{run_dir / 'last.pt'}: nothing to resume (no such file)")
        ckpt = load_checkpoint(run_dir / "last.pt")
        from_file = read_toml(config_file) if config_file else {}
        config = resumed_config(ckpt, {**from_file, **given})
        config = validated(asdict(config), config_file, set(from_file) - set(given))
    else:
        config = resolve_config(config_file, given)
        check_new_run(run_dir, overwrite)
    cube = open_cube(cube_path)
    spec = cube.spec()
    if ckpt is not None and ckpt.spec != spec:
        now, then = spec.to_json(), ckpt.spec.to_json()
        changed = sorted(k for k in now if now[k] != then.get(k))
        raise VmrnnError(f"{cube_path}: differs from the cube this run was trained on ({', '.join(changed)})")
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
    torch.manual_seed(config.seed)
    net = build_network(config.model_config(), len(cube.band_names), cube.window).to(device)
    net.checkpoint_steps = config.grad_checkpoint
    optimizer = make_optimizer(net, config.lr)
    state = RunState()
    if ckpt is not None:
        net.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        state = RunState(**ckpt.state["progress"])
        torch.set_rng_state(ckpt.state["rng_cpu"])
        if device.type == "cuda" and ckpt.state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt.state["rng_cuda"], device)
    model = DistributedDataParallel(net) if ranks.world > 1 else net
    sampler = DistributedSampler(train_set, ranks.world, ranks.rank, shuffle=True, seed=config.seed)
    steps_per_epoch = math.ceil(len(sampler) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    full_config = {"train": asdict(config), "model": config.model_config()}

    def checkpoint(name: str, with_state: bool) -> None:
        train_state: dict[str, Any] = {}
        if with_state:
            train_state = {
                "optimizer": optimizer.state_dict(),
                "progress": asdict(state),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }
        save_checkpoint(
            Checkpoint(net.state_dict(), full_config, cube.mean, cube.std, spec, train_state), run_dir / name
        )

    written = [run_dir / name for name in RUN_FILES] if ranks.main else []
    if state.epoch >= config.epochs:
        _log(ranks, f"{run_dir}: training already finished ({config.epochs} epochs)")
        return written
    forward: Callable[[Tensor, int], Tensor] = model
    shape = (config.batch_size, cube.input_frames, len(cube.band_names), cube.window, cube.window)
    if graphs:  # before the run directory is written: a refused capture leaves no run behind
        capture_started = time.perf_counter()
        graphed = graphed_unless_failed(
            net, shape, cube.output_frames, device, config.cuda_graphs is True, lambda message: _log(ranks, message)
        )
        graphs = graphed is not None
        if graphed is not None:
            forward = graphed
            _log(ranks, f"captured the training step as CUDA graphs in {time.perf_counter() - capture_started:.1f} s")
    elif config.compile:
        forward = compiled_forward(model, shape, cube.output_frames)
    if ckpt is None and ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        (run_dir / "config.toml").write_text(to_toml(config))
    modes = [
        name
        for name, on in (
            ("per-frame activation checkpointing", config.grad_checkpoint),
            ("CUDA graphs", graphs),
            ("torch.compile (the first full batch compiles)", config.compile),
        )
        if on
    ]
    _log(
        ranks,
        f"training {config.arch} on {device} ({ranks.world} process(es))"
        + "".join(f", {mode}" for mode in modes)
        + f": {len(train_set)} train / "
        f"{len(val_set)} val windows, {steps_per_epoch} steps per epoch"
        + ("" if len(val_set) else "; no validation windows, best.pt follows the training loss"),
    )
    show = ranks.main and sys.stderr.isatty()
    with stop_on_signals() as received, _progress(show) as bar:
        for epoch in range(state.epoch, config.epochs):
            sampler.set_epoch(epoch)
            order = list(sampler)[state.batch * config.batch_size :]
            loader = DataLoader(
                Subset(train_set, order),
                batch_size=config.batch_size,
                num_workers=workers,
                pin_memory=device.type == "cuda",
                generator=torch.Generator(),
            )
            task = (
                bar.add_task(
                    f"epoch {epoch + 1}/{config.epochs}",
                    total=steps_per_epoch,
                    completed=state.batch,
                    loss=math.nan,
                    rate=0.0,
                )
                if show
                else None
            )
            started = time.perf_counter() - state.seconds
            # sse and valid-pixel count summed on the device: reading them every step would stall the CPU
            running = torch.tensor([state.sse, state.count], dtype=torch.float64, device=device)
            for batch in _batches(loader):
                lr = learning_rate(state.step, total_steps, config.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                sse, count = _forward_loss(forward, batch.to(device, non_blocking=True), cube, device)
                loss = sse / count.clamp(min=1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state.step, state.batch = state.step + 1, state.batch + 1
                running += torch.stack((sse.detach().double(), count.double()))
                state.samples += len(batch)
                state.seconds = time.perf_counter() - started
                if task is not None:
                    bar.update(
                        task, advance=1, loss=float(loss.detach()), rate=state.samples / max(state.seconds, 1e-9)
                    )
                signum = agreed_signal(received, ranks, device)
                if signum:
                    state.sse, state.count = running.tolist()
                    if ranks.main:
                        checkpoint("last.pt", with_state=True)
                    raise Interrupted(signum, run_dir / "last.pt")
            if task is not None:
                bar.remove_task(task)
            state.sse, state.count = running.tolist()  # waits for the epoch's last step
            state.seconds = time.perf_counter() - started
            sse_all, count_all, samples_all = sum_ranks([state.sse, state.count, state.samples], ranks, device)
            train_loss = sse_all / count_all if count_all else math.nan
            val_loss = _validate(net, val_set, cube, config, ranks, device, workers)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": learning_rate(max(state.step - 1, 0), total_steps, config.lr),
                "samples_per_s": samples_all / max(state.seconds, 1e-9),
                "seconds": state.seconds,
            }
            score = train_loss if math.isnan(val_loss) else val_loss
            improved = score < state.best
            state = RunState(
                epoch=epoch + 1, step=state.step, best=min(state.best, score), metrics=[*state.metrics, row]
            )
            if ranks.main:
                if improved:
                    checkpoint("best.pt", with_state=False)
                checkpoint("last.pt", with_state=True)
                write_metrics(run_dir, state.metrics)
            _log(
                ranks,
                f"epoch {epoch + 1}/{config.epochs}  train_loss {train_loss:.5f}  val_loss {val_loss:.5f}  "
                f"{row['samples_per_s']:.1f} samples/s  {row['seconds']:.1f} s" + ("  *" if improved else ""),
            )
            signum = agreed_signal(received, ranks, device)
            if signum:
                raise Interrupted(signum, run_dir / "last.pt")
    return written
