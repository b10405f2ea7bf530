"""GPU: train-step time and peak memory of the paper configs, per scan backend, precision and step mode.

Makes the "GPU: train step" figure of benchmarks/RESULTS.md; with --triton-config, the train steps of its notes
on the fused scan's configuration.
One step = forward over the whole sequence (teacher forcing, then own outputs) + MSE + backward + AdamW,
on random frames; median of --steps timed steps (default 20) after 3 warm-up steps, CUDA events; peak =
torch.cuda.max_memory_allocated. Then a torch.profiler view of one step (--profile). Variants are `vmrnn train`'s
step modes, built by the same code: eager, graphs (--cuda-graphs: forward and backward captured once as CUDA
graphs, capture time reported apart), ckpt (--grad-checkpoint: per-frame activation checkpointing), graphs+ckpt
and compile (--compile: the forward through torch.compile; the first step, which compiles forward and backward,
is timed apart as the capture time). Prints one table row per (config, backend, precision, variant).

    python3 benchmarks/gpu_train.py --configs 2,0,1 --backends triton --precisions bf16 --variants graphs \
        --steps 10 --profile ''
    python3 benchmarks/gpu_train.py --mamba-build .mamba/build --json $OUT/gpu_train.json   # every backend
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from mamba_local import MAMBA_SRC, ROOT, mamba_kernel  # also puts the repository root on sys.path

from models import build_model
from models.scan import triton_ss2d
from vmrnn_cli.training.step_modes import compiled_forward, graphed_forward

# name, arch, model kwargs, T_in, horizon, batch: the paper's configs
CONFIGS = [
    (
        "MMNIST VMRNN-D b16",
        "vmrnn-d",
        dict(in_channels=1, img_size=64, patch_size=2, embed_dim=128, depths=(2, 2)),
        10,
        10,
        16,
    ),
    (
        "TaxiBJ VMRNN-B b16",
        "vmrnn-b",
        dict(in_channels=2, img_size=32, patch_size=4, embed_dim=128, depths=12),
        4,
        4,
        16,
    ),
    ("KTH VMRNN-B b4", "vmrnn-b", dict(in_channels=1, img_size=128, patch_size=2, embed_dim=128, depths=6), 10, 20, 4),
    (
        "KTH VMRNN-B b16",
        "vmrnn-b",
        dict(in_channels=1, img_size=128, patch_size=2, embed_dim=128, depths=6),
        10,
        20,
        16,
    ),
]
WARMUP, STEPS = 3, 20
# the plain-PyTorch scan is ~30x slower than the kernels: only the two small configs, 1 + 3 steps
TORCH_CONFIGS, TORCH_WARMUP, TORCH_STEPS = (0, 1), 1, 3
# name: (CUDA graphs, activation checkpointing, torch.compile)
VARIANTS = {
    "eager": (False, False, False),
    "graphs": (True, False, False),
    "ckpt": (False, True, False),
    "graphs+ckpt": (True, True, False),
    "compile": (False, False, True),
}
PRECISIONS = {"fp32": False, "bf16": True}


def parse_choices(text: str, known: dict) -> list[str]:
    """A comma list of names from `known`, in the order given; an unknown name is a usage error."""
    names = [name for name in text.split(",") if name]
    if not names or any(name not in known for name in names):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of {', '.join(known)}")
    return names


def make_step(config, backend, bf16, variant):
    """A train step of `config` as `vmrnn train` runs it in `variant`, and the seconds its graph capture or its
    compilation (a first step, run here) took."""
    _, arch, kwargs, t_in, horizon, batch = config
    graphs, ckpt, compile_ = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_model(arch, scan_backend=backend, **kwargs).cuda()
    model.checkpoint_steps = ckpt
    frames = torch.rand(
        batch, t_in + horizon, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"], device="cuda"
    )
    inputs = frames[:, :t_in].contiguous()
    forward, capture_s = model, None
    if graphs:
        start = time.perf_counter()
        forward = graphed_forward(model, tuple(inputs.shape), horizon, inputs.device, bf16)
        torch.cuda.synchronize()
        capture_s = time.perf_counter() - start
    elif compile_:
        forward = compiled_forward(model, tuple(inputs.shape), horizon)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = forward(inputs, horizon)
        loss = F.mse_loss(out.float(), frames[:, 1:])
        loss.backward()
        opt.step()
        return loss

    if compile_:
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        capture_s = time.perf_counter() - start
    return step, capture_s


def failed_row(config, backend, precision, variant, err: Exception) -> dict:
    """A table row for a measurement that raised (OOM, or a capture that failed): the error's first line."""
    message = "OOM" if isinstance(err, torch.OutOfMemoryError) else f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return {
        "config": config[0],
        "backend": backend,
        "precision": precision,
        "variant": variant,
        "ms": float("nan"),
        "samples_s": float("nan"),
        "peak_GiB": float("nan"),
        "capture_s": None,
        "loss": message,
    }


def release_memory() -> None:
    """Free the last measurement's model, graphs, compiled code and memory pools (graphed modules sit in reference
    cycles; dynamo would keep every measurement's compiled code, up to its recompile limit, then fall back to eager)."""
    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()


def measure(config, backend, bf16, variant, timed_steps=STEPS) -> dict:
    name, _, _, _, _, batch = config
    torch.cuda.reset_peak_memory_stats()
    step, capture_s = make_step(config, backend, bf16, variant)
    warmup, steps = (TORCH_WARMUP, TORCH_STEPS) if backend == "torch" else (WARMUP, timed_steps)
    for _ in range(warmup):
        loss = step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    return {
        "config": name,
        "backend": backend,
        "precision": "bf16" if bf16 else "fp32",
        "variant": variant,
        "ms": ms,
        "samples_s": batch / ms * 1e3,
        "peak_GiB": torch.cuda.max_memory_allocated() / 2**30,
        "capture_s": capture_s,
        "steps": steps,
        "loss": float(loss.detach()),
    }


def profile(config, backend, bf16, variant) -> str:
    """Top GPU kernels of one step, kernel and launch-call counts, and GPU-busy time against the step's wall time."""
    name = config[0]
    step, _ = make_step(config, backend, bf16, variant)
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    launches = sum(e.name.startswith(("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")) for e in prof.events())
    busy = sum(e.device_time for e in events) / 1e3
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60)
    return (
        f"profile {name} {backend} {'bf16' if bf16 else 'fp32'} {variant}: {len(events)} GPU kernels/step, "
        f"{launches} kernel/graph launch calls seen, GPU busy {busy:.1f} ms of {wall:.1f} ms wall (profiler on)"
        f"\n{table}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mamba-src", default=str(MAMBA_SRC))
    parser.add_argument("--mamba-build", default=str(ROOT / ".mamba/build"))
    parser.add_argument(
        "--triton-config", default=None, help="models.scan.triton_ss2d.Config fields to change: name=value,..."
    )
    parser.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))))
    parser.add_argument("--backends", default="triton,mamba,torch")
    parser.add_argument("--precisions", default="fp32,bf16", type=lambda text: parse_choices(text, PRECISIONS))
    parser.add_argument(
        "--variants",
        default="eager",
        type=lambda text: parse_choices(text, VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--profile",
        default="triton",
        help="backend to profile on the first config, each precision and variant ('' = none)",
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    if args.triton_config:
        fields = dict(field.split("=") for field in args.triton_config.split(","))
        triton_ss2d.CONFIG = replace(triton_ss2d.CONFIG, **{k: int(v) for k, v in fields.items()})
    backends = args.backends.split(",")
    build = mamba_kernel.start_build(args.mamba_src, args.mamba_build) if "mamba" in backends and mamba_kernel else None
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton config {triton_ss2d.CONFIG}", flush=True)

    rows = []
    # mamba last: its kernel compiles in the background meanwhile
    for backend in sorted(backends, key=lambda b: b == "mamba"):
        if backend == "mamba":
            ext = mamba_kernel.finish_build(build, args.mamba_src, args.mamba_build) if mamba_kernel else None
            if ext is None:
                continue
            mamba_kernel.install_as_mamba_ssm(ext)
        for index in (int(i) for i in args.configs.split(",")):
            if backend == "torch" and index not in TORCH_CONFIGS:
                continue
            for precision in args.precisions:
                for variant in args.variants:
                    try:
                        row = measure(CONFIGS[index], backend, PRECISIONS[precision], variant, args.steps)
                    except RuntimeError as err:  # OOM, or a capture that failed: one row says which
                        row = failed_row(CONFIGS[index], backend, precision, variant, err)
                    release_memory()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(rows, indent=1))

    if args.profile:
        first = CONFIGS[int(args.configs.split(",")[0])]
        for precision in args.precisions:
            for variant in args.variants:
                print(profile(first, args.profile, PRECISIONS[precision], variant), flush=True)
                release_memory()

    print("\n| config | backend | precision | variant | ms/step | samples/s | peak GiB | capture/compile s | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        capture = "-" if r["capture_s"] is None else f"{r['capture_s']:.1f}"
        note = r["loss"] if isinstance(r["loss"], str) else ""
        print(
            f"| {r['config']} | {r['backend']} | {r['precision']} | {r['variant']} | {r['ms']:.1f} "
            f"| {r['samples_s']:.1f} | {r['peak_GiB']:.1f} | {capture} | {note} |"
        )


if __name__ == "__main__":
    main()
