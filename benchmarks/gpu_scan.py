"""GPU: the selective-scan backends side by side, as kernels alone, at the SS2D shapes of the paper configs.

Makes the "GPU: selective-scan kernels alone" figure of benchmarks/RESULTS.md.
Builds mamba_ssm's CUDA kernel from .mamba/csrc/selective_scan in the background (when the sources and the local
build helper are there), checks every backend against the sequential reference, sweeps the Triton block shapes
of models/scan/triton_scan.py, then times forward and forward+backward (median of triton.testing.do_bench)
against the bytes floor. Prints one table row per shape.

    python3 benchmarks/gpu_scan.py --mamba-build .mamba/build --json $OUT/gpu_scan.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
import triton
from gpu_ss2d import SHAPES as SS2D_SHAPES
from gpu_ss2d import N
from mamba_local import MAMBA_SRC, mamba_kernel  # also puts the repository root on sys.path
from triton.testing import do_bench

from models.scan import ScanInputs, triton_scan
from models.scan.reference import selective_scan_reference
from models.scan.torch_scan import selective_scan_torch

# name, batch, channels (4 directions x d_inner), L (tokens), groups (directions): SS2D as the models call it
SHAPES = [(name, batch, 4 * dim, height * width, 4) for name, batch, height, width, dim in SS2D_SHAPES]
# two block shapes to sweep, the default first
SWEEP = [triton_scan.CONFIG, replace(triton_scan.CONFIG, fwd_block_d=32, fwd_warps=2)]
DEVICE = "cuda"
CHECK_SHAPE = (2, 256, 1000, 4)  # batch, channels, L (not a multiple of any chunk), groups
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def scan_inputs(batch, dim, L, groups, has_z=False, seed=0):
    """Inputs with SS2D's magnitudes: dt = softplus(small + bias) in [1e-3, 0.1], A = -(1..N)."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    rand = lambda *s: torch.randn(*s, device=DEVICE, generator=g)  # noqa: E731
    dt0 = torch.exp(torch.rand(dim, device=DEVICE, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    x = {
        "u": rand(batch, dim, L),
        "delta": rand(batch, dim, L) * 0.1,
        "A": -torch.arange(1, N + 1, device=DEVICE, dtype=torch.float32).repeat(dim, 1),
        "B": rand(batch, groups, N, L),
        "C": rand(batch, groups, N, L),
        "D": torch.ones(dim, device=DEVICE) + 0.1 * rand(dim),
        "z": rand(batch, dim, L) if has_z else None,
        "delta_bias": dt0 + torch.log(-torch.expm1(-dt0)),
    }
    return {k: None if v is None else v.requires_grad_() for k, v in x.items()}


def floor_bytes(batch, dim, L, groups) -> tuple[int, int]:
    """Fewest fp32 bytes moved: forward reads u, delta, B, C and writes y; backward reads u, delta, B, C,
    dy and writes du, ddelta, dB, dC."""
    x, bc = batch * dim * L * 4, batch * groups * N * L * 4
    fwd = 3 * x + 2 * bc
    return fwd, fwd + 5 * x + 4 * bc


def copy_bandwidth() -> float:
    """Device-to-device copy of 1 GiB, bytes read + written per second."""
    src = torch.randn(2**28, device=DEVICE)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * src.numel() * 4 / (ms * 1e-3)


def timed(scan, x, backward: bool) -> float:
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"])
    grads_of = [x[k] for k in GRAD_NAMES]
    dout = torch.randn(x["u"].shape, device=DEVICE)

    def fwd():
        return scan(*args, delta_softplus=True)

    def fwd_bwd():
        torch.autograd.grad(scan(*args, delta_softplus=True), grads_of, dout)

    return do_bench(fwd_bwd if backward else fwd, warmup=25, rep=150, return_mode="median")


def check(backends: dict) -> list[str]:
    """Relative error of every backend's output and 7 gradients (8 with z) against the reference."""
    lines = []
    for has_z in (False, True):
        x = scan_inputs(*CHECK_SHAPE, has_z=has_z, seed=1)
        names = GRAD_NAMES + (("z",) if has_z else ())
        leaves = [x[k] for k in names]
        dout = torch.randn(x["u"].shape, device=DEVICE)
        results = {}
        for name, scan in [("reference", selective_scan_reference)] + list(backends.items()):
            out = scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
            grads = torch.autograd.grad(out, leaves, dout)
            results[name] = [out.double()] + [t.double() for t in grads]
        for name in backends:
            errs = [((a - b).norm() / b.norm()).item() for a, b in zip(results[name], results["reference"])]
            ok = all(e < 1e-4 for e in errs)
            each = ", ".join(f"{n}={e:.1e}" for n, e in zip(("out", *names), errs))
            lines.append(f"{name:8s} z={has_z!s:5s} max rel err {max(errs):.2e} ({each}) {'OK' if ok else 'FAIL'}")
    return lines


def sweep(shape) -> list[dict]:
    """Forward and backward kernel times of each Triton config at one shape."""
    _, batch, dim, L, groups = shape
    x = {k: None if v is None else v.detach() for k, v in scan_inputs(batch, dim, L, groups).items()}
    dout = torch.randn(batch, dim, L, device=DEVICE)
    args = ScanInputs(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True)
    rows = []
    for cfg in SWEEP:
        _, hstart = triton_scan.launch_forward(args, cfg)
        f = do_bench(partial(triton_scan.launch_forward, args, cfg), warmup=10, rep=60, return_mode="median")
        backward = partial(triton_scan.launch_backward, args, hstart, dout, cfg)
        b = do_bench(backward, warmup=10, rep=60, return_mode="median")
        rows.append({"config": asdict(cfg), "fwd_ms": f, "bwd_ms": b})
        print(f"  {shape[0]:38s} {cfg} fwd {f:.4f} ms bwd {b:.4f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mamba-src", default=str(MAMBA_SRC))
    parser.add_argument("--mamba-build", default="/tmp/mamba_build")
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args()

    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    t0 = time.time()
    build = mamba_kernel.start_build(args.mamba_src, args.mamba_build) if mamba_kernel else None

    bw = copy_bandwidth()
    report["copy_GBps"] = bw / 1e9
    print(
        f"{report['device']}  torch {torch.__version__}  triton {triton.__version__}  copy {bw / 1e9:.0f} GB/s",
        flush=True,
    )

    report["sweep"] = {}
    best = {}
    for shape in SHAPES:
        rows = sweep(shape)
        report["sweep"][shape[0]] = rows
        f = min(rows, key=lambda r: r["fwd_ms"])
        b = min(rows, key=lambda r: r["bwd_ms"])
        same_chunk = [r for r in rows if r["config"]["chunk"] == b["config"]["chunk"]]
        fb = min(same_chunk, key=lambda r: r["fwd_ms"])
        best[shape[0]] = fb["config"] | {k: b["config"][k] for k in ("bwd_block_d", "bwd_warps")}
        print(
            f"sweep {shape[0]:38s} best fwd {f['fwd_ms']:.4f} ms {f['config']}  best bwd {b['bwd_ms']:.4f} ms "
            f"{b['config']}  -> {best[shape[0]]}",
            flush=True,
        )
    report["best"] = best

    backends = {"torch": selective_scan_torch, "triton": triton_scan.selective_scan_triton}
    ext = mamba_kernel.finish_build(build, args.mamba_src, args.mamba_build) if mamba_kernel else None
    if ext is not None:
        backends["mamba"] = mamba_kernel.make_scan_fn(ext)
        report["mamba_build_s"] = time.time() - t0
        print(f"mamba kernel built in {report['mamba_build_s']:.0f} s", flush=True)

    report["check"] = check(backends)
    print("\n".join(report["check"]), flush=True)

    def tuned(name):
        cfg = triton_scan.Config(**best[name])
        return lambda *a, delta_softplus: triton_scan.SelectiveScanTriton.apply(*a, delta_softplus, cfg)

    table = []
    for shape in SHAPES:
        name, batch, dim, L, groups = shape
        x = scan_inputs(batch, dim, L, groups)
        fwd_bytes, all_bytes = floor_bytes(batch, dim, L, groups)
        row = {"shape": name, "floor_fwd_ms": fwd_bytes / bw * 1e3, "floor_fb_ms": all_bytes / bw * 1e3}
        for bname, scan in list(backends.items()) + [("triton-tuned", tuned(name))]:
            row[bname] = (timed(scan, x, False), timed(scan, x, True))
        table.append(row)
        print(json.dumps(row), flush=True)
        del x
        torch.cuda.empty_cache()
    report["table"] = table

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    names = list(backends) + ["triton-tuned"]
    print(
        f"\nSelective scan, fp32, N={N}, D + delta_bias + softplus, no z; median ms (fwd / fwd+bwd); "
        f"floor = fewest bytes / {bw / 1e9:.0f} GB/s copy"
    )
    print(
        "| shape (b, channels, L, groups) | "
        + " | ".join(names)
        + " | floor | triton/mamba speedup fwd+bwd | tuned % of floor (fwd+bwd) |"
    )
    print("|---" * (len(names) + 4) + "|")
    for row, shape in zip(table, SHAPES):
        cells = [f"{row[n][0]:.3f} / {row[n][1]:.3f}" for n in names]
        speed = (
            f"{row['mamba'][1] / row['triton'][1]:.2f}x (tuned {row['mamba'][1] / row['triton-tuned'][1]:.2f}x)"
            if "mamba" in row
            else "n/a"
        )
        pct = 100 * row["floor_fb_ms"] / row["triton-tuned"][1]
        print(
            f"| {shape[0]} ({shape[1]}, {shape[2]}, {shape[3]}, {shape[4]}) | "
            + " | ".join(cells)
            + f" | {row['floor_fwd_ms']:.3f} / {row['floor_fb_ms']:.3f} | {speed} | {pct:.0f}% |"
        )


if __name__ == "__main__":
    main()
