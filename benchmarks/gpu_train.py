"""GPU: train-step throughput and peak memory of the paper configs, per scan backend and precision (issue 6).

One step = forward over the whole sequence (teacher forcing, then own outputs) + MSE + backward + AdamW,
on random frames; median of 20 timed steps after 3 warm-up steps; then a torch.profiler view of one step.

    python3 benchmarks/gpu_train.py --mamba-build .mamba/build --json $OUT/gpu_train.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / ".mamba")]

try:  # a local, uncommitted helper that builds mamba_ssm's kernel from its sources (see RESULTS.md)
    import mamba_kernel  # noqa: E402
except ImportError:
    mamba_kernel = None
from models import build_model  # noqa: E402
from models.scan import triton_scan  # noqa: E402

# name, arch, model kwargs, T_in, horizon, batch; anchor = official code + mamba, fp32 (issue 6): ms/step, GiB
CONFIGS = [
    ("MMNIST VMRNN-D b16", "vmrnn-d", dict(in_channels=1, img_size=64, patch_size=2, embed_dim=128, depths=(2, 2)),
     10, 10, 16, (632, 33.6)),
    ("TaxiBJ VMRNN-B b16", "vmrnn-b", dict(in_channels=2, img_size=32, patch_size=4, embed_dim=128, depths=12),
     4, 4, 16, (268, 2.2)),
    ("KTH VMRNN-B b4", "vmrnn-b", dict(in_channels=1, img_size=128, patch_size=2, embed_dim=128, depths=6),
     10, 20, 4, (1104, 62.5)),
    ("KTH VMRNN-B b16", "vmrnn-b", dict(in_channels=1, img_size=128, patch_size=2, embed_dim=128, depths=6),
     10, 20, 16, None),
]
WARMUP, STEPS = 3, 20
# the plain-PyTorch scan is ~30x slower than the kernels: only the two small configs, 1 + 3 steps
TORCH_CONFIGS, TORCH_WARMUP, TORCH_STEPS = (0, 1), 1, 3


def make_step(model, frames, t_in, horizon, bf16):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(frames[:, :t_in], horizon)
        loss = F.mse_loss(out.float(), frames[:, 1:])
        loss.backward()
        opt.step()
        return loss

    return step


def measure(config, backend, bf16, timed_steps=STEPS) -> dict:
    name, arch, kwargs, t_in, horizon, batch, _ = config
    torch.manual_seed(0)
    model = build_model(arch, scan_backend=backend, **kwargs).cuda()
    frames = torch.rand(batch, t_in + horizon, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"],
                        device="cuda")
    step = make_step(model, frames, t_in, horizon, bf16)
    warmup, steps = (TORCH_WARMUP, TORCH_STEPS) if backend == "torch" else (WARMUP, timed_steps)
    torch.cuda.reset_peak_memory_stats()
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
    return {"config": name, "backend": backend, "precision": "bf16" if bf16 else "fp32", "ms": ms,
            "samples_s": batch / ms * 1e3, "peak_GiB": torch.cuda.max_memory_allocated() / 2**30,
            "steps": steps, "loss": float(loss)}


def profile(config, backend, bf16) -> str:
    """Top GPU kernels of one step, kernel count, and GPU-busy time against the step's wall time."""
    name, arch, kwargs, t_in, horizon, batch, _ = config
    model = build_model(arch, scan_backend=backend, **kwargs).cuda()
    frames = torch.rand(batch, t_in + horizon, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"],
                        device="cuda")
    step = make_step(model, frames, t_in, horizon, bf16)
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
    busy = sum(e.device_time for e in events) / 1e3
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60)
    return (f"profile {name} {backend} {'bf16' if bf16 else 'fp32'}: {len(events)} GPU kernels/step, "
            f"GPU busy {busy:.1f} ms of {wall:.1f} ms wall (profiler on)\n{table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mamba-src", default=str(ROOT / ".mamba/csrc/selective_scan"))
    parser.add_argument("--mamba-build", default=str(ROOT / ".mamba/build"))
    parser.add_argument("--triton-config", default=None, help="chunk,fwd_block_d,fwd_warps,bwd_block_d,bwd_warps")
    parser.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))))
    parser.add_argument("--backends", default="triton,mamba,torch")
    parser.add_argument("--profile", default="triton", help="backend to profile on the first config ('' = none)")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    if args.triton_config:
        triton_scan.CONFIG = tuple(int(v) for v in args.triton_config.split(","))
    backends = args.backends.split(",")
    build = mamba_kernel.start_build(args.mamba_src, args.mamba_build) if "mamba" in backends and mamba_kernel else None
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton config {triton_scan.CONFIG}", flush=True)

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
            for bf16 in (False, True):
                try:
                    row = measure(CONFIGS[index], backend, bf16, args.steps)
                except torch.OutOfMemoryError:
                    row = {"config": CONFIGS[index][0], "backend": backend, "precision": "bf16" if bf16 else "fp32",
                           "ms": float("nan"), "samples_s": float("nan"), "peak_GiB": float("nan"), "loss": "OOM"}
                torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))

    if args.profile:
        first = CONFIGS[int(args.configs.split(",")[0])]
        for bf16 in (False, True):
            print(profile(first, args.profile, bf16), flush=True)

    print("\n| config | backend | precision | ms/step | samples/s | peak GiB | vs anchor samples/s |")
    print("|---|---|---|---|---|---|---|")
    anchors = {c[0]: c[6] for c in CONFIGS}
    for r in rows:
        anchor = anchors[r["config"]]
        ratio = f"{anchor[0] / r['ms']:.2f}x" if anchor else "n/a"
        print(f"| {r['config']} | {r['backend']} | {r['precision']} | {r['ms']:.1f} | {r['samples_s']:.1f} "
              f"| {r['peak_GiB']:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
