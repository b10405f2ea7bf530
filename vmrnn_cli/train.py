"""Train VMRNN on a prepared cube: AdamW with warm-up + cosine, masked MSE, checkpoints, resume, DDP.

One process trains on one device; under `torchrun --nproc-per-node N` every process trains on its
share of the windows (DistributedSampler) and rank 0 alone writes the run directory. Options that
only change how a step runs: per-frame activation checkpointing (memory), the model's forward through
torch.compile (speed) and, on one CUDA GPU (by default there; eager with a warning where that capture fails),
the model's forward and backward captured once as CUDA graphs and replayed every full-size step (speed).
"""

from __future__ import annotations

import csv
import gc
import io
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from vmrnn_cli.atomic import atomic_path
from vmrnn_cli.checkpoint import Checkpoint, build_network, load_checkpoint, save_checkpoint
from vmrnn_cli.config import TrainConfig, read_toml, resolve_config, to_toml
from vmrnn_cli.cube import Cube, open_cube
from vmrnn_cli.dataset import WindowDataset
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.loss import masked_sse

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "config.toml")
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds")
WARMUP_FRACTION = 0.05  # linear warm-up over the first 5% of the steps, then cosine decay to 0
WEIGHT_DECAY = 0.05
# options a resumed run may change: hardware and how a step runs, not what it computes
RESUMABLE_ANYWHERE = ("device", "workers", "grad_checkpoint", "cuda_graphs", "compile")


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing `checkpoint`; exit with 128 + signum."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint written to {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


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


@dataclass
class Ranks:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env() -> Ranks:
        """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK (a plain run is rank 0 of 1)."""
        env = os.environ
        return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up to `peak` over the first WARMUP_FRACTION of `total` steps, then cosine decay to 0."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """auto -> CUDA when there is one; under torchrun each process takes GPU LOCAL_RANK."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise VmrnnError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def geo_template(cube: Cube) -> dict[str, Any]:
    """The cube's grid, bands, time step and window sizes as plain JSON-able values for the checkpoint."""
    times = cube.data["time"].values
    nodata = None if cube.nodata is None or np.isnan(cube.nodata) else float(cube.nodata)
    return {
        "crs_wkt": cube.crs.to_wkt(),
        "transform": list(cube.transform)[:6],
        "shape": [int(cube.data.sizes["y"]), int(cube.data.sizes["x"])],
        "band_names": list(cube.band_names),
        "nodata": nodata,
        "time_step_seconds": time_step_seconds(times),
        "calendar": getattr(times[0], "calendar", "") or "proleptic_gregorian",
        "input_frames": cube.input_frames,
        "output_frames": cube.output_frames,
        "patch_size": cube.patch_size,
    }


def time_step_seconds(times: np.ndarray) -> float | None:
    """The last time step of a series in seconds (numpy datetime64 or cftime values); None for one frame."""
    if len(times) < 2:
        return None
    step = times[-1] - times[-2]
    return float(step / np.timedelta64(1, "s")) if isinstance(step, np.timedelta64) else step.total_seconds()


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """While active, SIGINT/SIGTERM only record their number (list[0]) so training can checkpoint and stop."""
    received = [0]

    def record(signum: int, _frame: object) -> None:
        received[0] = signum

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _agreed_signal(received: list[int], ranks: Ranks, device: torch.device) -> int:
    """The signal any rank received (all ranks must stop at the same step)."""
    if ranks.world == 1:
        return received[0]
    flag = torch.tensor([received[0]], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def _sum_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    if ranks.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class FixedHorizon(nn.Module):
    """model(frames, horizon) with the horizon fixed, under bf16 autocast without its weight cache.

    The form torch.cuda.make_graphed_callables captures: tensor arguments only, and autocast's cache
    off inside the graphed region (it would keep graph-pool casts of the weights alive across replays).
    """

    def __init__(self, model: nn.Module, horizon: int, bf16: bool) -> None:
        super().__init__()
        self.model = model
        self.horizon = horizon
        self.bf16 = bf16

    def forward(self, frames: Tensor) -> Tensor:
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            return self.model(frames, self.horizon)


def dispatch_to_graph(graphed: Callable[[Tensor], Tensor], eager: Callable[[Tensor, int], Tensor],
                      shape: tuple[int, ...], horizon: int) -> Callable[[Tensor, int], Tensor]:
    """A model-like forward: inputs of the captured shape at the captured horizon run `graphed`, any other
    batch (an epoch's last, partial one) runs `eager`, since a CUDA graph replays fixed shapes only (and a
    compiled forward would compile again for the new shape)."""

    def forward(frames: Tensor, frames_out: int) -> Tensor:
        if tuple(frames.shape) == shape and frames_out == horizon:
            return graphed(frames)
        return eager(frames, frames_out)

    return forward


def graphed_forward(net: nn.Module, shape: tuple[int, ...], horizon: int, device: torch.device, bf16: bool
                    ) -> Callable[[Tensor, int], Tensor]:
    """net's forward and backward for float32 inputs of `shape` captured once as CUDA graphs (bf16 autocast
    inside when `bf16`); other shapes run eager. The capture's warm-up leaves parameters and .grad alone."""
    sample = torch.zeros(shape, device=device)  # like the real inputs: float32, requires_grad=False
    graphed = torch.cuda.make_graphed_callables(FixedHorizon(net, horizon, bf16), (sample,))
    return dispatch_to_graph(graphed, net, shape, horizon)


def _graphed_unless_failed(net: nn.Module, shape: tuple[int, ...], horizon: int, device: torch.device,
                           explicit: bool, ranks: Ranks) -> Callable[[Tensor, int], Tensor] | None:
    """graphed_forward(...); where the capture fails, an error if --cuda-graphs asked for it, else one warning line
    and None: the default's graphs only speed up, and the failed warm-up changed no weight, .grad, buffer (the models
    have none) or RNG state, so eager training goes on as without graphs."""
    try:
        return graphed_forward(net, shape, horizon, device, bf16=True)  # as _forward_loss on CUDA
    except Exception as err:  # noqa: BLE001 - whatever the capture raises, graphs cannot run on this setup
        reason = f"{type(err).__name__}: {next(iter(str(err).strip().splitlines()), '')}"
        if explicit:
            raise VmrnnError(f"--cuda-graphs: capturing the training step as CUDA graphs failed ({reason}); "
                             "pass --no-cuda-graphs to train without them") from err
        _log(ranks, f"warning: capturing the training step as CUDA graphs failed ({reason}); training without them "
                    "(--no-cuda-graphs skips the capture and this warning)")
        return None


def compiled_forward(model: nn.Module, shape: tuple[int, ...], horizon: int) -> Callable[[Tensor, int], Tensor]:
    """model's forward through torch.compile (default mode; compiled by the first call) for inputs of `shape` at
    `horizon`; other shapes run eager rather than compile again. Shapes stay static even where dynamo met the model
    with others earlier in the process (inductor fails on its dynamic-shape graphs, torch 2.13). The module and its
    state_dict stay as they are (no `_orig_mod.` prefix)."""
    compiled = torch.compile(model, dynamic=False)
    return dispatch_to_graph(lambda frames: compiled(frames, horizon), model, shape, horizon)


def use_cuda_graphs(config: TrainConfig, device: torch.device, world: int) -> bool:
    """Whether steps run as CUDA graphs: as --cuda-graphs/--no-cuda-graphs say, else wherever they can (one CUDA
    GPU, one process, no --compile: several times fewer kernel launches). An explicit --cuda-graphs that cannot
    run is an error."""
    if config.cuda_graphs is None:
        return device.type == "cuda" and world == 1 and not config.compile
    if config.cuda_graphs and config.compile:
        raise VmrnnError("--compile: cannot be combined with --cuda-graphs, which captures the uncompiled model "
                         "(pick one; on --resume pass --no-cuda-graphs or --no-compile)")
    if config.cuda_graphs and world > 1:
        raise VmrnnError(f"--cuda-graphs: works in a single process only, not under torchrun with {world} "
                         "processes (drop the option; on --resume pass --no-cuda-graphs)")
    if config.cuda_graphs and device.type != "cuda":
        raise VmrnnError("--cuda-graphs: training runs on the CPU here and CUDA graphs need a CUDA GPU "
                         "(drop the option; on --resume pass --no-cuda-graphs)")
    return config.cuda_graphs


def _check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start over an existing run unless --overwrite (then its files are replaced)."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise VmrnnError(f"{run_dir}: already holds a run ({', '.join(existing)}); "
                         "pass --resume to continue it or --overwrite to start over")
    if run_dir.exists() and not run_dir.is_dir():
        raise VmrnnError(f"{run_dir}: exists and is not a directory")


def _resumed_config(ckpt: Checkpoint, given: dict[str, Any]) -> TrainConfig:
    """The run's own config; options given now may only change those in RESUMABLE_ANYWHERE."""
    config = TrainConfig(**ckpt.config["train"])
    for key, value in given.items():
        if key not in RESUMABLE_ANYWHERE and getattr(config, key) != value:
            option = "--" + key.replace("_", "-")
            raise VmrnnError(f"{ckpt.path}: {option} {value} differs from the run's {getattr(config, key)}; "
                             "a resumed run keeps its config (start a new run to change it)")
    return TrainConfig(**{**asdict(config), **{k: v for k, v in given.items() if k in RESUMABLE_ANYWHERE}})


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(run_dir / "metrics.csv", overwrite=True) as tmp:
        tmp.write_text(text.getvalue())


def _forward_loss(model: Callable[[Tensor, int], Tensor], batch: Tensor, cube: Cube, device: torch.device
                  ) -> tuple[Tensor, Tensor]:
    """Sum of squared errors and valid-pixel count over every predicted next frame of a batch of windows."""
    inputs = torch.nan_to_num(batch[:, :cube.input_frames])
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


def _validate(net: torch.nn.Module, dataset: WindowDataset, cube: Cube, config: TrainConfig, ranks: Ranks,
              device: torch.device, workers: int) -> float:
    """Masked MSE over all validation windows (all ranks together); NaN when there are none."""
    if len(dataset) == 0:
        return math.nan
    sampler = DistributedSampler(dataset, ranks.world, ranks.rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        generator=torch.Generator())
    sse, count = 0.0, 0.0
    net.eval()
    with torch.no_grad():
        for batch in _batches(loader):
            s, c = _forward_loss(net, batch.to(device), cube, device)
            sse, count = sse + float(s), count + float(c)
    net.train()
    sse, count = _sum_ranks([sse, count], ranks, device)
    return sse / count if count else math.nan


def _progress(enabled: bool) -> Progress | nullcontext:
    if not enabled:
        return nullcontext()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} samples/s"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def _log(ranks: Ranks, message: str) -> None:
    if ranks.main:
        print(message, file=sys.stderr, flush=True)


def train(cube_path: Path, run_dir: Path, config_file: Path | None = None, given: dict[str, Any] | None = None,
          resume: bool = False, overwrite: bool = False) -> list[Path]:
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
        config = _resumed_config(ckpt, {**(read_toml(config_file) if config_file else {}), **given})
        config = config.validate(str(config_file) if config_file else "options")
    else:
        config = resolve_config(config_file, given)
        _check_new_run(run_dir, overwrite)
    cube = open_cube(cube_path)
    geo = geo_template(cube)
    if ckpt is not None and ckpt.geo != geo:
        changed = sorted(k for k in geo if geo[k] != ckpt.geo.get(k))
        raise VmrnnError(f"{cube_path}: differs from the cube this run was trained on ({', '.join(changed)})")
    train_set, val_set = WindowDataset(cube, "train"), WindowDataset(cube, "val")
    if len(train_set) == 0:
        raise VmrnnError(f"{cube_path}: no training windows (prepare it with a longer train split or smaller "
                         "--patch-size)")
    device = pick_device(config.device, ranks.local_rank)
    graphs = use_cuda_graphs(config, device, ranks.world)
    workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
    if ranks.world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cube, run_dir, config, geo, ckpt, ranks, device, graphs, workers, train_set, val_set)
    finally:
        if ranks.world > 1:
            dist.destroy_process_group()


def _train(cube: Cube, run_dir: Path, config: TrainConfig, geo: dict[str, Any], ckpt: Checkpoint | None,
           ranks: Ranks, device: torch.device, graphs: bool, workers: int, train_set: WindowDataset,
           val_set: WindowDataset) -> list[Path]:
    torch.manual_seed(config.seed)
    net = build_network(config.model_config(), len(cube.band_names), cube.patch_size).to(device)
    net.checkpoint_steps = config.grad_checkpoint
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=WEIGHT_DECAY)
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
            train_state = {"optimizer": optimizer.state_dict(), "progress": asdict(state),
                           "rng_cpu": torch.get_rng_state(),
                           "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        save_checkpoint(Checkpoint(net.state_dict(), full_config, cube.mean, cube.std, geo, train_state),
                        run_dir / name)

    written = [run_dir / name for name in RUN_FILES] if ranks.main else []
    if state.epoch >= config.epochs:
        _log(ranks, f"{run_dir}: training already finished ({config.epochs} epochs)")
        return written
    forward: Callable[[Tensor, int], Tensor] = model
    shape = (config.batch_size, cube.input_frames, len(cube.band_names), cube.patch_size, cube.patch_size)
    if graphs:  # before the run directory is written: a refused capture leaves no run behind
        capture_started = time.perf_counter()
        graphed = _graphed_unless_failed(net, shape, cube.output_frames, device, config.cuda_graphs is True, ranks)
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
    modes = [name for name, on in (("per-frame activation checkpointing", config.grad_checkpoint),
                                   ("CUDA graphs", graphs),
                                   ("torch.compile (the first full batch compiles)", config.compile)) if on]
    _log(ranks, f"training {config.arch} on {device} ({ranks.world} process(es))"
                + "".join(f", {mode}" for mode in modes) + f": {len(train_set)} train / "
                f"{len(val_set)} val windows, {steps_per_epoch} steps per epoch"
                + ("" if len(val_set) else "; no validation windows, best.pt follows the training loss"))
    show = ranks.main and sys.stderr.isatty()
    with stop_on_signals() as received, _progress(show) as bar:
        for epoch in range(state.epoch, config.epochs):
            sampler.set_epoch(epoch)
            order = list(sampler)[state.batch * config.batch_size:]
            loader = DataLoader(Subset(train_set, order), batch_size=config.batch_size, num_workers=workers,
                                pin_memory=device.type == "cuda", generator=torch.Generator())
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch,
                                completed=state.batch, loss=math.nan, rate=0.0) if show else None
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
                    bar.update(task, advance=1, loss=float(loss.detach()), rate=state.samples / max(state.seconds, 1e-9))
                signum = _agreed_signal(received, ranks, device)
                if signum:
                    state.sse, state.count = running.tolist()
                    if ranks.main:
                        checkpoint("last.pt", with_state=True)
                    raise Interrupted(signum, run_dir / "last.pt")
            if task is not None:
                bar.remove_task(task)
            state.sse, state.count = running.tolist()  # waits for the epoch's last step
            state.seconds = time.perf_counter() - started
            sse_all, count_all, samples_all = _sum_ranks([state.sse, state.count, state.samples], ranks, device)
            train_loss = sse_all / count_all if count_all else math.nan
            val_loss = _validate(net, val_set, cube, config, ranks, device, workers)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   "lr": learning_rate(max(state.step - 1, 0), total_steps, config.lr),
                   "samples_per_s": samples_all / max(state.seconds, 1e-9), "seconds": state.seconds}
            score = train_loss if math.isnan(val_loss) else val_loss
            improved = score < state.best
            state = RunState(epoch=epoch + 1, step=state.step, best=min(state.best, score),
                              metrics=[*state.metrics, row])
            if ranks.main:
                if improved:
                    checkpoint("best.pt", with_state=False)
                checkpoint("last.pt", with_state=True)
                _write_metrics(run_dir, state.metrics)
            _log(ranks, f"epoch {epoch + 1}/{config.epochs}  train_loss {train_loss:.5f}  val_loss {val_loss:.5f}  "
                        f"{row['samples_per_s']:.1f} samples/s  {row['seconds']:.1f} s" + ("  *" if improved else ""))
            signum = _agreed_signal(received, ranks, device)
            if signum:
                raise Interrupted(signum, run_dir / "last.pt")
    return written
