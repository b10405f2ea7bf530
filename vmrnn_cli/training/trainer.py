"""One run's epochs: the network, optimiser and data order set up once; steps, checkpoints, validation."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from vmrnn_cli.data.cube import Cube, CubeSpec
from vmrnn_cli.data.dataset import WindowDataset
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.options import TrainConfig, to_toml
from vmrnn_cli.progress import Steps
from vmrnn_cli.runtime import threads, worker_threads
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, save_checkpoint
from vmrnn_cli.training.distributed import Ranks, agreed_signal, log, sum_ranks
from vmrnn_cli.training.interrupt import Interrupted
from vmrnn_cli.training.loss import masked_sse
from vmrnn_cli.training.recipe import learning_rate, make_optimizer, optimizer_state
from vmrnn_cli.training.rundir import write_metrics
from vmrnn_cli.training.step_modes import TURNED_ON, compiled_forward, fit_in_memory, graphed_unless_failed
from vmrnn_cli.training.watch import FiniteWatch


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
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=worker_threads,
        generator=torch.Generator(),
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


class Trainer:
    """One run's training: the network, optimiser and data order set up once, then epoch by epoch."""

    def __init__(
        self,
        cube: Cube,
        run_dir: Path,
        config: TrainConfig,
        spec: CubeSpec,
        ranks: Ranks,
        device: torch.device,
        workers: int,
        train_set: WindowDataset,
        val_set: WindowDataset,
    ) -> None:
        self.cube, self.run_dir, self.config, self.spec = cube, run_dir, config, spec
        self.ranks, self.device, self.workers, self.train_set, self.val_set = ranks, device, workers, train_set, val_set
        torch.manual_seed(config.seed)
        torch.set_num_threads(max(1, threads() - workers))  # the workers take one thread each
        self.net = build_network(config.model_config(), len(cube.band_names), cube.window).to(device)
        self.net.checkpoint_steps = bool(config.grad_checkpoint)  # None: off until a step does not fit
        self.optimizer = make_optimizer(self.net, config)  # lr, weight_decay
        self.model = DistributedDataParallel(self.net) if ranks.world > 1 else self.net
        self.forward: Callable[[Tensor, int], Tensor] = self.model
        self.sampler = DistributedSampler(train_set, ranks.world, ranks.rank, shuffle=True, seed=config.seed)
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.state = RunState()
        self.watch = FiniteWatch(device, ranks.world, config.lr)
        self.saved_at = time.monotonic()
        self.fitted = 0  # the largest batch whose step ran with the optimizer's moments in memory (see _fit)
        self.resumed = False

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint's weights, optimiser, progress and RNG state."""
        self.resumed = True
        self.net.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(optimizer_state(ckpt.state["optimizer"], self.net, self.optimizer))
        self.state = RunState(**ckpt.state["progress"])
        torch.set_rng_state(ckpt.state["rng_cpu"])
        if self.device.type == "cuda" and ckpt.state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt.state["rng_cuda"], self.device)

    def save(self, name: str, with_state: bool) -> None:
        """Write `name` in the run directory (rank 0), after checking that no step since the last save diverged."""
        self.watch.settle()
        if not self.ranks.main:
            return
        train_state: dict[str, Any] = {}
        if with_state:
            train_state = {
                "optimizer": self.optimizer.state_dict(),
                "progress": asdict(self.state),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            }
        config = {"train": asdict(self.config), "model": self.config.model_config()}
        save_checkpoint(
            Checkpoint(self.net.state_dict(), config, self.cube.mean, self.cube.std, self.spec, train_state),
            self.run_dir / name,
        )
        self.saved_at = time.monotonic()

    def switched(self, message: str) -> None:
        """Activation checkpointing was turned on because a step did not fit in GPU memory: say so once, and record it
        in the config that last.pt and best.pt keep (and a new run's config.toml), so that `resume` trains as this run
        does."""
        self.net.checkpoint_steps = True
        if self.config.grad_checkpoint:
            return
        self.config.grad_checkpoint = True
        log(self.ranks, message)
        config_toml = self.run_dir / "config.toml"
        if self.ranks.main and not self.resumed and config_toml.exists():  # written already: the switch came in a step
            with atomic_path(config_toml, overwrite=True) as tmp:
                tmp.write_text(to_toml(self.config))

    def probe_memory(self) -> None:
        """Under torchrun on CUDA, with `grad_checkpoint` unset: one forward and backward of a full batch of zeros on
        the bare network (no DDP hooks), turning checkpointing on where it does not fit; all ranks then agree. A
        step that runs out of memory under DDP cannot be retried: the other ranks wait in its all-reduce."""
        cube, config = self.cube, self.config
        shape = (config.batch_size, cube.input_frames + cube.output_frames, len(cube.band_names))

        def attempt() -> None:
            batch = torch.zeros(*shape, cube.window, cube.window, device=self.device)
            sse, count = _forward_loss(self.net, batch, cube, self.device)
            (sse / count.clamp(min=1)).backward()

        fit_in_memory(attempt, self.net, config.grad_checkpoint, lambda message: None)
        self.net.zero_grad(set_to_none=True)
        if sum_ranks([float(self.net.checkpoint_steps)], self.ranks, self.device)[0] > 0:
            self.switched(TURNED_ON)
        torch.cuda.empty_cache()

    def _fit(self, step: Callable[[], Any], batch: Tensor) -> Any:
        """step(), through fit_in_memory until a batch this large has run with the optimizer's moments in memory
        (they are made by the first optimizer step); afterwards, and under DDP (see probe_memory), as it is."""
        if len(batch) <= self.fitted or self.ranks.world > 1:
            return step()
        moments = bool(self.optimizer.state)
        result = fit_in_memory(step, self.net, self.config.grad_checkpoint, self.switched)
        if moments:
            self.fitted = len(batch)
        return result

    def step_modes(self, graphs: bool) -> list[str]:
        """Set up CUDA graphs or torch.compile for full-size steps (checkpointing turned on where the capture does not
        fit in GPU memory); the modes in use, for the log."""
        cube, config = self.cube, self.config
        shape = (config.batch_size, cube.input_frames, len(cube.band_names), cube.window, cube.window)
        if self.ranks.world > 1 and self.device.type == "cuda" and config.grad_checkpoint is None:
            self.probe_memory()
        if graphs:
            started = time.perf_counter()
            graphed = fit_in_memory(
                lambda: graphed_unless_failed(
                    self.net,
                    shape,
                    cube.output_frames,
                    self.device,
                    config.cuda_graphs is True,
                    lambda message: log(self.ranks, message),
                ),
                self.net,
                config.grad_checkpoint,
                self.switched,
            )
            graphs = graphed is not None
            if graphed is not None:
                self.forward = graphed
                log(self.ranks, f"captured the training step as CUDA graphs in {time.perf_counter() - started:.1f} s")
        elif config.compile:
            self.forward = compiled_forward(self.model, shape, cube.output_frames)
        modes = (
            ("per-frame activation checkpointing", config.grad_checkpoint),
            ("CUDA graphs", graphs),
            ("torch.compile (the first full batch compiles)", config.compile),
        )
        return [name for name, on in modes if on]

    def run(self, received: list[int]) -> None:
        """Train the remaining epochs; Interrupted after a checkpoint on a signal, Diverged on a non-finite step."""
        for epoch in range(self.state.epoch, self.config.epochs):
            self.epoch(epoch, received)
            signum = agreed_signal(received, self.ranks, self.device)
            if signum:
                raise Interrupted(signum, self.run_dir / "last.pt")

    def epoch(self, epoch: int, received: list[int]) -> None:
        """One epoch from where the state stands: steps, then validation, best.pt, last.pt and metrics.csv."""
        config, state, device = self.config, self.state, self.device
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)[state.batch * config.batch_size :]
        loader = DataLoader(
            Subset(self.train_set, order),
            batch_size=config.batch_size,
            num_workers=self.workers,
            worker_init_fn=worker_threads,
            pin_memory=device.type == "cuda",
            generator=torch.Generator(),
        )
        steps = Steps(f"epoch {epoch + 1}/{config.epochs}: steps", self.steps_per_epoch, state.batch, self.ranks.main)
        with steps:
            self.steps(epoch, loader, steps, received)
        self.end_epoch(epoch)

    def steps(self, epoch: int, loader: DataLoader, steps: Steps, received: list[int]) -> None:
        """The epoch's remaining steps; last.pt every `checkpoint_every` minutes and on a signal (then Interrupted)."""
        config, state, device = self.config, self.state, self.device
        started = time.perf_counter() - state.seconds
        # sse and valid-pixel count summed on the device: reading them every step would stall the CPU
        running = torch.tensor([state.sse, state.count], dtype=torch.float64, device=device)
        for batch in _batches(loader):
            lr = learning_rate(state.step, self.total_steps, config.lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = batch.to(device, non_blocking=True)

            def forward_backward(batch: Tensor = batch) -> tuple[Tensor, Tensor, Tensor]:
                sse, count = _forward_loss(self.forward, batch, self.cube, device)
                loss = sse / count.clamp(min=1)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                return sse, count, loss

            sse, count, loss = self._fit(forward_backward, batch)
            self.watch.record(loss, self.net, epoch + 1, state.batch + 1)
            self.optimizer.step()
            state.step, state.batch = state.step + 1, state.batch + 1
            running += torch.stack((sse.detach().double(), count.double()))
            state.samples += len(batch)
            state.seconds = time.perf_counter() - started
            steps.advance()
            signum = agreed_signal(received, self.ranks, device)
            if signum or time.monotonic() - self.saved_at > 60 * config.checkpoint_every:
                state.sse, state.count = running.tolist()
                self.save("last.pt", with_state=True)
            if signum:
                raise Interrupted(signum, self.run_dir / "last.pt")
        state.sse, state.count = running.tolist()  # waits for the epoch's last step
        state.seconds = time.perf_counter() - started

    def end_epoch(self, epoch: int) -> None:
        """Validate, then write best.pt (if it improved), last.pt and metrics.csv, in that order."""
        config, state, ranks = self.config, self.state, self.ranks
        sse_all, count_all, samples_all = sum_ranks([state.sse, state.count, state.samples], ranks, self.device)
        train_loss = sse_all / count_all if count_all else math.nan
        val_loss = _validate(self.net, self.val_set, self.cube, config, ranks, self.device, self.workers)
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": learning_rate(max(state.step - 1, 0), self.total_steps, config.lr),
            "samples_per_s": samples_all / max(state.seconds, 1e-9),
            "seconds": state.seconds,
        }
        score = train_loss if math.isnan(val_loss) else val_loss
        improved = score < state.best
        self.state = RunState(
            epoch=epoch + 1, step=state.step, best=min(state.best, score), metrics=[*state.metrics, row]
        )
        if improved:
            self.save("best.pt", with_state=False)
        self.save("last.pt", with_state=True)
        if ranks.main:
            write_metrics(self.run_dir, self.state.metrics)
        log(
            ranks,
            f"epoch {epoch + 1}/{config.epochs}  train_loss {train_loss:.5f}  val_loss {val_loss:.5f}  "
            f"{row['samples_per_s']:.1f} samples/s  {row['seconds']:.1f} s" + ("  *" if improved else ""),
        )
