"""Selective scan on CPU: the chunked "torch" backend against the sequential reference.

Makes the "Selective scan on the CPU" figures of benchmarks/RESULTS.md. Every time is one forward + backward at
batch 1, dim 256, N 16, L 1024; the fast variants are timed in alternation and their best run kept (the
machine is shared), the reference runs once (it is slow).

`variants`: SS2D-like inputs (dt from VMamba's init, A = -(1..16)). Peak memory: the largest total of live
tensor bytes during one forward + backward, summed from torch.profiler's allocation events
(profile_memory=True), for the chunked scan and for the same scan in one chunk of L, beside the size of one
naive (batch, dim, L, N) tensor. Prints one table row per variant.

`sweep`: the per-step decay delta * |A| swept from 1e-3 to 3 (A = -1 for every state, delta 0 and delta_bias
softplus^-1 of the decay, so every step of every channel decays by exactly that much), for the torch scan of
the working tree ("new") and of `--baseline`, a git revision whose models/scan/torch_scan.py is loaded from
`git show` at run time ("old"). The error is the largest of the norm-wise relative errors
||x - x_ref|| / ||x_ref|| over the output and the gradients of u, delta, A, B, C, D, z and delta_bias.

    .venv/bin/python benchmarks/scan_cpu.py [--part all|variants|sweep] [--repeats 5] [--reference-repeats 1]
        [--baseline REV] [--decays 1e-3 1e-2 0.1 0.3 1 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from models.scan import selective_scan_reference, selective_scan_torch
from models.scan.inputs import expand_groups, finish_output, prepare_delta

BATCH, DIM, N, LENGTH = 1, 256, 16, 1024
ROOT = Path(__file__).resolve().parents[1]
# The last revision with the torch scan that differentiated its factorized sums by autograd in checkpointed
# chunks (sub-chunks cut so that |cumulative dt*A| <= 40 from each sub-chunk's first step).
BASELINE = "4b2c14c336f331a54253b3968394a3ab9266f839"
DECAYS = (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0)
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def sequential_unbind(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The reference recurrence with inputs unbound along L once, so its backward is O(L), not O(L^2)
    (the reference's per-step indexing zero-fills a full-size gradient at every step): a fairer baseline."""
    u, dim = u.float(), u.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    A, B, C = A.float(), expand_groups(B.float(), dim), expand_groups(C.float(), dim)
    h = u.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for dt, b, c, x in zip(delta.unbind(-1), B.unbind(-1), C.unbind(-1), u.unbind(-1)):
        h = torch.exp(dt[..., None] * A) * h + (dt * x)[..., None] * b
        ys.append((h * c).sum(-1))
    return finish_output(torch.stack(ys, dim=-1), u, D, z)


def load_baseline(rev: str) -> Callable[..., torch.Tensor]:
    """`selective_scan_torch` as models/scan/torch_scan.py was at git revision `rev` (imported from a temporary
    copy; it imports the working tree's models.scan.inputs)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:models/scan/torch_scan.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "torch_scan_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("torch_scan_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.selective_scan_torch


def make_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """SS2D-like inputs: softplus(delta + bias) spans VMamba's dt init range [1e-3, 1e-1]."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(DIM, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    tensors = {
        "u": torch.randn(BATCH, DIM, LENGTH, generator=gen),
        "delta": 0.1 * torch.randn(BATCH, DIM, LENGTH, generator=gen),
        "A": -torch.arange(1, N + 1, dtype=torch.float32).repeat(DIM, 1),
        "B": torch.randn(BATCH, 1, N, LENGTH, generator=gen),
        "C": torch.randn(BATCH, 1, N, LENGTH, generator=gen),
        "D": torch.ones(DIM),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }
    return {k: v.requires_grad_() for k, v in tensors.items()}


def make_decay_inputs(decay: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs whose every step decays every state by e^-decay: A = -1, softplus(delta + delta_bias) = decay."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.full((DIM,), decay)
    tensors = {
        "u": torch.randn(BATCH, DIM, LENGTH, generator=gen),
        "delta": torch.zeros(BATCH, DIM, LENGTH),
        "A": -torch.ones(DIM, N),
        "B": torch.randn(BATCH, 1, N, LENGTH, generator=gen),
        "C": torch.randn(BATCH, 1, N, LENGTH, generator=gen),
        "D": torch.ones(DIM),
        "z": torch.randn(BATCH, DIM, LENGTH, generator=gen),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }
    return {k: v.requires_grad_() for k, v in tensors.items()}


def forward_backward(scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor]) -> float:
    """Seconds for one forward + backward pass."""
    for t in inputs.values():
        t.grad = None
    start = time.perf_counter()
    scan(**inputs, delta_softplus=True).sum().backward()
    return time.perf_counter() - start


def best_alternating(scans: dict[str, Callable[..., torch.Tensor]], inputs: dict, repeats: int) -> dict[str, float]:
    """Best of `repeats` forward + backward times of each scan, run in turn (after one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in scans}
    for scan in scans.values():
        forward_backward(scan, inputs)  # warm-up: the first call imports and allocates lazily
    for _ in range(repeats):
        for name, scan in scans.items():
            times[name].append(forward_backward(scan, inputs))
    return {name: min(ts) for name, ts in times.items()}


def output_and_grads(scan: Callable[..., torch.Tensor], inputs: dict) -> list[torch.Tensor]:
    """The output and the gradients of a fixed random projection of it, with respect to every input."""
    y = scan(**inputs, delta_softplus=True)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    return [y.detach(), *torch.autograd.grad((y * weights).sum(), [inputs[k] for k in GRAD_NAMES if k in inputs])]


def max_rel_err(got: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """Largest norm-wise relative error over matching tensors (inf if any is not finite)."""
    errs = []
    for a, b in zip(got, expected):
        if not torch.isfinite(a).all():
            return math.inf
        errs.append(((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item())
    return max(errs)


def peak_live_mib(scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor]) -> float:
    """Peak of live tensor bytes (MiB) allocated during one forward + backward."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(scan, inputs)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def variants_table(args: argparse.Namespace, baseline: Callable[..., torch.Tensor]) -> None:
    scans = {
        "reference": selective_scan_reference,
        "sequential-unbind": sequential_unbind,
        "torch": selective_scan_torch,
        "torch-one-chunk": lambda *a, **k: selective_scan_torch(*a, chunk_size=LENGTH, **k),
        f"torch at {args.baseline[:7]}": baseline,
    }
    inputs = make_inputs()
    detached = {k: v.detach() for k, v in inputs.items()}
    y_ref = selective_scan_reference(**detached, delta_softplus=True)
    err = ((selective_scan_torch(**detached, delta_softplus=True) - y_ref).norm() / y_ref.norm()).item()

    times = {
        "reference": min(forward_backward(selective_scan_reference, inputs) for _ in range(args.reference_repeats))
    }
    times |= best_alternating({k: v for k, v in scans.items() if k != "reference"}, inputs, args.repeats)
    naive_mib = BATCH * DIM * LENGTH * N * 4 / 2**20

    print("SS2D-like inputs (dt in [1e-3, 1e-1], A = -(1..16))")
    print(f"relative error torch vs reference (forward): {err:.2e}")
    print(f"one naive (batch, dim, L, N) float32 tensor: {naive_mib:.1f} MiB")
    print("| variant | forward+backward (s, best) | vs reference | vs sequential-unbind | peak live tensors (MiB) |")
    print("|---|---|---|---|---|")
    for name, scan in scans.items():
        peak = f"{peak_live_mib(scan, inputs):.1f}" if name.startswith("torch") else "-"
        speedups = f"{times['reference'] / times[name]:.1f}x | {times['sequential-unbind'] / times[name]:.1f}x"
        print(f"| {name} | {times[name]:.3f} | {speedups} | {peak} |")


def decay_sweep(args: argparse.Namespace, baseline: Callable[..., torch.Tensor]) -> None:
    scans = {"old": baseline, "new": selective_scan_torch, "unbind": sequential_unbind}
    print(f"decay sweep: A = -1, softplus(delta + delta_bias) = decay; old = torch scan at {args.baseline[:7]}")
    print(
        "| decay dt*|A| | reference s | old s | new s | old speed-up (ref s / old s) | new speed-up (ref s / new s) "
        "| new vs sequential-unbind | max rel err old | max rel err new |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for decay in args.decays:
        inputs = make_decay_inputs(decay)
        expected = output_and_grads(selective_scan_reference, inputs)
        errs = {name: max_rel_err(output_and_grads(scans[name], inputs), expected) for name in ("old", "new")}
        ref = min(forward_backward(selective_scan_reference, inputs) for _ in range(args.reference_repeats))
        times = best_alternating(scans, inputs, args.repeats)
        print(
            f"| {decay:g} | {ref:.3f} | {times['old']:.3f} | {times['new']:.3f} | {ref / times['old']:.1f}x "
            f"| {ref / times['new']:.1f}x | {times['unbind'] / times['new']:.1f}x "
            f"| {errs['old']:.1e} | {errs['new']:.1e} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "variants", "sweep"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old torch scan")
    parser.add_argument("--decays", type=float, nargs="+", default=DECAYS)
    args = parser.parse_args()

    baseline = load_baseline(args.baseline)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, dim {DIM}, N {N}, L {LENGTH}")
    print(" ".join(sys.argv))
    if args.part in ("all", "variants"):
        variants_table(args, baseline)
    if args.part in ("all", "sweep"):
        decay_sweep(args, baseline)


if __name__ == "__main__":
    main()
