"""GPU: SS2D's four-direction scan as the model calls it, fused Triton kernels against the copy-and-scan paths.

Makes the "GPU: SS2D's four-direction scan" figure of benchmarks/RESULTS.md.
For each SS2D shape of the paper configs, times (median of triton.testing.do_bench, ms) forward and
forward+backward of: the fused Triton op (models/scan/triton_ss2d.py, reading the grid in place), and
the plain path (grid copied into four scan orders, cast to float32, scanned, merged back) with mamba_ssm's
CUDA kernel (what the official code does) and with our unfused Triton scan; and the scan kernels alone on
inputs already in scan order. First checks the fused op through each of its backwards against the plain path
with the reference scan, and sweeps the fused kernels' block shapes. mamba_ssm's kernel is built from
.mamba/csrc/selective_scan in the background when those sources and the local build helper are there (see
RESULTS.md). Prints one table row per shape and input dtype.

    python3 benchmarks/gpu_ss2d.py --shapes 0,3,4
    python3 benchmarks/gpu_ss2d.py --json $OUT/gpu_ss2d.json      # all six shapes
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
import triton
from mamba_local import MAMBA_SRC, mamba_kernel  # also puts the repository root on sys.path
from triton.testing import do_bench

from models.scan import selective_scan, triton_ss2d
from models.ss2d import ss2d_scan_plain, to_scan_order

# name, batch, H, W, d_inner (2 x embed of the stage)
SHAPES = [
    ("MMNIST-D stage1 32x32", 16, 32, 32, 256),
    ("MMNIST-D stage2 16x16", 16, 16, 16, 512),
    ("MMNIST-D up stage 8x8", 16, 8, 8, 1024),
    ("TaxiBJ-B 8x8", 16, 8, 8, 256),
    ("KTH-B 64x64 b4", 4, 64, 64, 256),
    ("KTH-B 64x64 b16", 16, 64, 64, 256),
]
N, RANK = 16, 8
FWD_SWEEP = [(8, 16), (8, 32), (16, 16)]  # chunk, block_d
SEQ_SWEEP = [(8, 8), (8, 16), (4, 16)]  # seq_chunk, seq_block_d
PAR_SWEEP = [(16, 8, 2), (8, 8, 2), (16, 4, 2)]  # par_chunk, par_block_d, par_warps
BACKWARDS = ("sequential", "parallel", "segmented")  # triton_ss2d.force_layout's
DEVICE = "cuda"
GRAD_NAMES = ("u", "delta", "A", "x_dbl", "D", "delta_bias")
CHECK_SHAPE = (2, 12, 20, 64)  # batch, H, W, d_inner: H*W not a multiple of the chunk, H != W


def ss2d_inputs(batch, height, width, dim, dtype=torch.float32, seed=0) -> dict:
    """SS2D's scan inputs with the model's magnitudes; B and C are views into one x_dbl tensor, as in SS2D."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    rand = lambda *s: torch.randn(*s, device=DEVICE, generator=g)  # noqa: E731
    dt0 = torch.exp(torch.rand(4 * dim, device=DEVICE, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    x = {
        "u": rand(batch, height, width, dim).to(dtype),
        "delta": (rand(batch, height, width, 4, dim) * 0.1).to(dtype),
        "A": -torch.arange(1, N + 1, device=DEVICE, dtype=torch.float32).repeat(4 * dim, 1),
        "x_dbl": rand(batch, height, width, 4, RANK + 2 * N).to(dtype),
        "D": torch.ones(4 * dim, device=DEVICE) + 0.1 * rand(4 * dim),
        "delta_bias": dt0 + torch.log(-torch.expm1(-dt0)),
    }
    return {k: v.requires_grad_() for k, v in x.items()}


def call(op, x, *extra, **kwargs):
    """op(u, delta, A, B, C, D, delta_bias, *extra, **kwargs) with B and C cut from x_dbl as SS2D does."""
    B, C = x["x_dbl"][..., RANK : RANK + N], x["x_dbl"][..., RANK + N :]
    return op(x["u"], x["delta"], x["A"], B, C, x["D"], x["delta_bias"], *extra, **kwargs)


def timed(fn, x, backward: bool) -> float:
    leaves = [x[k] for k in GRAD_NAMES]
    out = fn(x)
    dout = torch.randn(out.shape, device=DEVICE)
    if backward:
        return do_bench(lambda: torch.autograd.grad(fn(x), leaves, dout), warmup=25, rep=150, return_mode="median")
    with torch.no_grad():
        return do_bench(lambda: fn(x), warmup=25, rep=150, return_mode="median")


def check(dtype, backward: str) -> str:
    """Relative error of the fused op's output and gradients (through `backward`) against the plain path with the
    reference scan."""
    x = ss2d_inputs(*CHECK_SHAPE, dtype, seed=1)
    leaves = [x[k] for k in GRAD_NAMES]
    config = triton_ss2d.force_layout(triton_ss2d.CONFIG, backward, CHECK_SHAPE[0], CHECK_SHAPE[3])
    results = []
    for op, args in ((triton_ss2d.SS2DScanTriton.apply, (config,)), (ss2d_scan_plain, ())):
        out = call(op, x, *args)
        dout = torch.randn(out.shape, device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(2))
        results.append([out.double()] + [g.double() for g in torch.autograd.grad(out, leaves, dout)])
    errs = {n: ((a - b).norm() / b.norm()).item() for n, a, b in zip(("out",) + GRAD_NAMES, *results)}
    return f"fused ({backward} backward) vs plain+reference, {dtype}: " + ", ".join(
        f"{k}={v:.1e}" for k, v in errs.items()
    )


def sweep(shape) -> list[str]:
    """Kernel times (ms) of the forward and of both backward kernels at each block shape, one line each."""
    _, batch, height, width, dim = shape
    x = {k: v.detach() for k, v in ss2d_inputs(batch, height, width, dim).items()}
    B, C = x["x_dbl"][..., RANK : RANK + N], x["x_dbl"][..., RANK + N :]
    args = (x["u"], x["delta"], x["A"], B, C, x["D"], x["delta_bias"])
    dout = torch.randn(batch, height, width, dim, device=DEVICE)
    base = triton_ss2d.CONFIG
    force = lambda config, backward: triton_ss2d.force_layout(config, backward, batch, dim)  # noqa: E731
    cases = [("fwd", force(replace(base, seq_chunk=c, block_d=bd), "sequential")) for c, bd in FWD_SWEEP]
    cases += [
        ("bwd sequential", force(replace(base, seq_chunk=c, seq_block_d=bd), "sequential")) for c, bd in SEQ_SWEEP
    ]
    cases += [
        ("bwd parallel", force(replace(base, par_chunk=c, par_block_d=bd, par_warps=w), "parallel"))
        for c, bd, w in PAR_SWEEP
    ]
    cases += [("bwd segmented", force(base, "segmented"))]
    lines = []
    for kind, cfg in cases:
        if kind == "fwd":
            ms = do_bench(
                partial(triton_ss2d.launch_forward, *args, True, cfg), warmup=10, rep=60, return_mode="median"
            )
        else:
            _, hstart = triton_ss2d.launch_forward(*args, True, cfg)
            backward = partial(triton_ss2d.launch_backward, *args, hstart, dout, cfg)
            ms = do_bench(backward, warmup=10, rep=60, return_mode="median")
        lines.append(f"  {shape[0]:38s} {kind:15s} {cfg}: {ms:.4f} ms")
    return lines


def kernel_times(backend: str, x: dict) -> tuple[float, float]:
    """Forward and forward+backward ms of a scan kernel alone, on x's inputs already copied into scan order."""
    b, height, width, d = x["u"].shape
    order = lambda t: to_scan_order(t.detach()).float().contiguous()  # noqa: E731
    args = {
        "u": order(x["u"].unsqueeze(3).expand(b, height, width, 4, d)).reshape(b, 4 * d, -1),
        "delta": order(x["delta"]).reshape(b, 4 * d, -1),
        "A": x["A"].detach(),
        "B": order(x["x_dbl"][..., RANK : RANK + N]),
        "C": order(x["x_dbl"][..., RANK + N :]),
        "D": x["D"].detach(),
        "delta_bias": x["delta_bias"].detach(),
    }
    args = {k: v.requires_grad_() for k, v in args.items()}
    run = lambda: selective_scan(**args, delta_softplus=True, backend=backend)  # noqa: E731
    dout = torch.randn(args["u"].shape, device=DEVICE)
    with torch.no_grad():
        fwd = do_bench(run, warmup=25, rep=150, return_mode="median")
    both = do_bench(
        lambda: torch.autograd.grad(run(), list(args.values()), dout), warmup=25, rep=150, return_mode="median"
    )
    return fwd, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mamba-src", default=str(MAMBA_SRC))
    parser.add_argument("--mamba-build", default="/tmp/mamba_build")
    parser.add_argument("--shapes", default=",".join(str(i) for i in range(len(SHAPES))))
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args()
    report: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "rows": [],
    }
    t0 = time.time()
    build = mamba_kernel.start_build(args.mamba_src, args.mamba_build) if mamba_kernel else None
    print(report, flush=True)
    for dtype, backward in itertools.product((torch.float32, torch.bfloat16), BACKWARDS):
        print(check(dtype, backward), flush=True)

    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    for shape in shapes:
        print("\n".join(sweep(shape)), flush=True)

    ext = mamba_kernel.finish_build(build, args.mamba_src, args.mamba_build) if build is not None else None
    if ext is not None:
        mamba_kernel.install_as_mamba_ssm(ext)
    print(f"mamba kernel: {'built' if ext is not None else 'absent'} ({time.time() - t0:.0f} s)", flush=True)
    paths = {"fused": None, "plain+triton": "triton"} | ({"plain+mamba": "mamba"} if ext is not None else {})
    for shape in shapes:
        name, batch, height, width, dim = shape
        for dtype in (torch.float32, torch.bfloat16):
            x = ss2d_inputs(batch, height, width, dim, dtype)
            row = {"shape": name, "dtype": str(dtype).split(".")[1], "config": asdict(triton_ss2d.CONFIG)}
            for label, backend in paths.items():
                if backend is None:
                    fn = lambda x: call(triton_ss2d.ss2d_scan_triton, x)  # noqa: E731
                else:
                    fn = lambda x, b=backend: call(ss2d_scan_plain, x, backend=b)  # noqa: E731
                row[label] = (timed(fn, x, False), timed(fn, x, True))
            for backend in ("triton", "mamba") if ext is not None else ("triton",):
                row[f"kernel {backend}"] = kernel_times(backend, x)
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1))

    columns = [k for k in report["rows"][0] if k not in ("shape", "dtype", "config")]
    print("\n| SS2D shape | inputs | " + " | ".join(columns) + " | fused vs plain+mamba, fwd+bwd |")
    print("|---" * (len(columns) + 3) + "|")
    for r in report["rows"]:
        cells = [f"{v[0]:.3f} / {v[1]:.3f}" for k, v in r.items() if k not in ("shape", "dtype", "config")]
        ratio = f"{r['plain+mamba'][1] / r['fused'][1]:.2f}x" if "plain+mamba" in r else "n/a"
        print(f"| {r['shape']} | {r['dtype']} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
