"""GPU: loss curves of bf16-autocast against fp32 training over the first 500 steps of a fixed-seed run.

Makes the "GPU: bf16 against fp32 loss curves" figure of benchmarks/RESULTS.md.

Model: the paper's TaxiBJ VMRNN-B as gpu_train.py builds it (32x32x2 frames, 4 in -> 4 out, batch 16), trained
as `vmrnn train` trains it: AdamW (its weight decay, the TaxiBJ preset's peak lr from
examples/configs/taxibj_vmrnn_b.toml), linear warm-up then cosine decay over the run's steps, masked MSE over every
predicted next frame, the forward under bf16 autocast or not; on CUDA as CUDA graphs (`--cuda-graphs`) unless
--eager. Data: moving Gaussian blobs on a 32x32 torus, two channels (the second trails the first by half a frame),
8 frames per window, standardised per channel, generated on the device from --data-seed; every run trains on the
same batches in the same order.

Three runs: fp32 with init seed S, bf16 with seed S, and fp32 with seed S' (the noise yardstick); the loss of
every step is recorded. The table gives each run's mean loss per window of --window steps, the relative
difference |run - fp32| / fp32 of each window mean, and each run's ms/step (steps after the first 10).
Verdict: "bf16 within noise: yes" when max over windows |bf16 - fp32| / fp32 <= max over windows
|fp32(S') - fp32| / fp32, i.e. bf16 moves the loss curve no more than another init seed does.

    python3 benchmarks/gpu_precision.py --json $OUT/gpu_precision.json
    python3 benchmarks/gpu_precision.py --steps 3 --device cpu --batch-size 1    # smoke test: ~2 min, ~5 GB RAM
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from gpu_train import CONFIGS, release_memory  # noqa: E402

from models import build_model  # noqa: E402
from models.scan import BACKENDS, resolve_backend  # noqa: E402
from vmrnn_cli.options import DEVICES, read_toml  # noqa: E402
from vmrnn_cli.runtime import pick_device  # noqa: E402
from vmrnn_cli.training.loss import masked_mse  # noqa: E402
from vmrnn_cli.training.recipe import WEIGHT_DECAY, learning_rate  # noqa: E402
from vmrnn_cli.training.step_modes import graphed_forward  # noqa: E402

CONFIG = CONFIGS[1]  # TaxiBJ VMRNN-B b16
PRESET = HERE.parent / "examples/configs/taxibj_vmrnn_b.toml"
TIMING_SKIP = 10  # first steps left out of ms/step (Triton compilation, allocator warm-up)
BLOBS, SPEED, SIGMA = 4, 2.0, (1.5, 4.0)  # blobs per window, max px/frame per axis, blob radius range in px


def make_batches(
    steps: int, batch: int, frames: int, channels: int, size: int, seed: int, device: torch.device
) -> Tensor:
    """(steps, batch, frames, channels, size, size) moving blobs, standardised per channel; fixed by seed and device."""
    gen = torch.Generator(device).manual_seed(seed)
    grid = torch.arange(size, dtype=torch.float32, device=device)
    t = torch.arange(frames, dtype=torch.float32, device=device)[:, None] - 0.5 * torch.arange(channels, device=device)
    windows = []
    for _ in range(steps):
        pos, vel, radius, amp = (torch.rand(batch, BLOBS, n, generator=gen, device=device) for n in (2, 2, 1, channels))
        centre = pos[:, :, None, None] * size + (2 * vel[:, :, None, None] - 1) * SPEED * t[..., None]  # b,K,T,C,2
        dy = (grid[:, None] - centre[..., 0, None, None] + size / 2) % size - size / 2
        dx = (grid - centre[..., 1, None, None] + size / 2) % size - size / 2
        sigma = SIGMA[0] + (SIGMA[1] - SIGMA[0]) * radius[:, :, None, None, :, None]
        blobs = (0.5 + 0.5 * amp)[:, :, None, :, None, None] * torch.exp(-(dy**2 + dx**2) / (2 * sigma**2))
        windows.append(blobs.sum(1))
    data = torch.stack(windows)
    dims = (0, 1, 2, 4, 5)
    return (data - data.mean(dims, keepdim=True)) / data.std(dims, keepdim=True)


def train_run(
    batches: Tensor, backend: str, bf16: bool, seed: int, lr: float, graphs: bool, device: torch.device
) -> tuple[list[float], float]:
    """One run over `batches` from init seed `seed`: the loss of every step and ms/step after TIMING_SKIP steps."""
    _, arch, kwargs, t_in, horizon, _ = CONFIG
    torch.manual_seed(seed)
    model = build_model(arch, scan_backend=backend, **kwargs).to(device)
    forward = model
    if graphs:
        forward = graphed_forward(model, (batches.shape[1], t_in, *batches.shape[3:]), horizon, device, bf16)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=WEIGHT_DECAY)
    steps = len(batches)
    skip = TIMING_SKIP if steps > TIMING_SKIP else 0
    losses = torch.zeros(steps, device=device)
    for i, frames in enumerate(batches):
        if i == skip:
            synchronize(device)
            start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = learning_rate(i, steps, lr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(frames[:, :t_in].contiguous(), horizon)
        loss = masked_mse(out, frames[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[i] = loss.detach()
    synchronize(device)
    ms = (time.perf_counter() - start) / (steps - skip) * 1e3
    return losses.tolist(), ms


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_means(losses: list[float], window: int) -> list[float]:
    """Mean loss over consecutive windows of `window` steps (the last one may be shorter)."""
    return [sum(chunk) / len(chunk) for chunk in (losses[i : i + window] for i in range(0, len(losses), window))]


def relative_diffs(means: list[float], reference: list[float]) -> list[float]:
    """|mean - reference| / |reference| per window; inf where either is not finite (a diverged run)."""
    return [
        abs(m - r) / abs(r) if math.isfinite(m) and math.isfinite(r) and r else math.inf
        for m, r in zip(means, reference)
    ]


def summarise(runs: list[dict], window: int) -> dict:
    """Window means of each run, bf16-vs-fp32 and fp32'-vs-fp32 relative differences, and the verdict."""
    means = [window_means(run["losses"], window) for run in runs]
    rel_bf16, rel_noise = relative_diffs(means[1], means[0]), relative_diffs(means[2], means[0])
    return {
        "window_means": means,
        "rel_bf16": rel_bf16,
        "rel_noise": rel_noise,
        "max_rel_bf16": max(rel_bf16),
        "max_rel_noise": max(rel_noise),
        "bf16_within_noise": max(rel_bf16) <= max(rel_noise),
        "windows_bf16_above_noise": sum(b > n for b, n in zip(rel_bf16, rel_noise)),
    }


def print_table(runs: list[dict], summary: dict, window: int, steps: int) -> None:
    """The window-mean table, ms/step and the verdict line, as markdown."""
    names = [run["name"] for run in runs]
    print(f"\n| steps | {' | '.join(names)} | bf16 vs fp32 | {names[2]} vs fp32 |")
    print("|---|" + "---|" * (len(names) + 2))
    for w, row in enumerate(zip(*summary["window_means"])):
        span = f"{w * window + 1}-{min((w + 1) * window, steps)}"
        print(
            f"| {span} | {' | '.join(f'{m:.5f}' for m in row)} | {100 * summary['rel_bf16'][w]:.2f} % "
            f"| {100 * summary['rel_noise'][w]:.2f} % |"
        )
    times = " | ".join(f"{run['ms_per_step']:.1f}" for run in runs)
    print(f"| ms/step | {times} | | |")
    print(
        f"\nlargest relative window difference: bf16 vs fp32 {100 * summary['max_rel_bf16']:.2f} %, "
        f"{names[2]} vs fp32 (noise) {100 * summary['max_rel_noise']:.2f} %; bf16's difference is the larger "
        f"in {summary['windows_bf16_above_noise']} of {len(summary['rel_bf16'])} windows"
    )
    print(
        f"bf16 within noise: {'yes' if summary['bf16_within_noise'] else 'no'}  (yes: max over windows "
        f"|bf16 - fp32| / fp32 <= max over windows |{names[2]} - fp32| / fp32, window means of {window} steps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--window", type=int, default=50, help="steps per window mean")
    parser.add_argument("--seed", type=int, default=0, help="init seed of the fp32 and bf16 runs")
    parser.add_argument("--noise-seed", type=int, default=1, help="init seed of the second fp32 run (noise yardstick)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=CONFIG[5],
        help=f"default {CONFIG[5]}, the paper's; 1 for a CPU smoke test (~5 GB RAM, torch scan)",
    )
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="selective scan ('auto': triton on CUDA)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--eager", action="store_true", help="on CUDA, run the model eagerly instead of as CUDA graphs")
    parser.add_argument("--json", default=None, help="write every step's loss and the summary here")
    args = parser.parse_args()
    if min(args.steps, args.window, args.batch_size) < 1:
        parser.error("--steps, --window and --batch-size must be >= 1")

    device = pick_device(args.device)
    backend = resolve_backend(args.backend, device)
    graphs = device.type == "cuda" and not args.eager
    lr = read_toml(PRESET)["lr"]
    name, _, kwargs, t_in, horizon, _ = CONFIG
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{card}  torch {torch.__version__}  {name}, {t_in} -> {horizon}, batch {args.batch_size}, scan {backend}, "
        f"{'CUDA graphs' if graphs else 'eager'}, AdamW lr {lr} wd {WEIGHT_DECAY}, {args.steps} steps",
        flush=True,
    )

    batches = make_batches(
        args.steps, args.batch_size, t_in + horizon, kwargs["in_channels"], kwargs["img_size"], args.data_seed, device
    )
    plan = [
        (f"fp32 (seed {args.seed})", False, args.seed),
        (f"bf16 (seed {args.seed})", True, args.seed),
        (f"fp32 (seed {args.noise_seed})", False, args.noise_seed),
    ]
    result = {
        "device": card,
        "torch": torch.__version__,
        "config": name,
        "backend": backend,
        "graphs": graphs,
        "batch_size": args.batch_size,
        "lr": lr,
        "weight_decay": WEIGHT_DECAY,
        "steps": args.steps,
        "window": args.window,
        "data_seed": args.data_seed,
        "runs": [],
    }
    for run_name, bf16, seed in plan:
        losses, ms = train_run(batches, backend, bf16, seed, lr, graphs, device)
        release_memory()
        result["runs"].append(
            {
                "name": run_name,
                "precision": "bf16" if bf16 else "fp32",
                "seed": seed,
                "ms_per_step": ms,
                "losses": losses,
            }
        )
        print(f"{run_name}: {ms:.1f} ms/step, loss first {losses[0]:.5f} last {losses[-1]:.5f}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))

    summary = summarise(result["runs"], args.window)
    result["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print_table(result["runs"], summary, args.window, args.steps)


if __name__ == "__main__":
    main()
