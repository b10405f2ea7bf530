"""Selective scan on CPU: the chunked "torch" backend against the sequential reference.

Makes the "Selective scan on the CPU" figure of benchmarks/RESULTS.md.
Forward + backward at batch 1, dim 256, N 16, L 1024 with SS2D-like inputs (dt from VMamba's init,
A = -(1..16)). Time: best of several runs. Peak memory: the largest total of live tensor bytes
during one forward + backward, summed from torch.profiler's allocation events (profile_memory=True),
for the chunked scan and for the same scan in one chunk of L, beside the size of one naive
(batch, dim, L, N) tensor. Prints one table row per variant.

    .venv/bin/python benchmarks/scan_cpu.py [--repeats 5] [--reference-repeats 1]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch.profiler import ProfilerActivity, profile

from models.scan import selective_scan_reference, selective_scan_torch
from models.scan.inputs import expand_groups, finish_output, prepare_delta

BATCH, DIM, N, LENGTH = 1, 256, 16, 1024


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


VARIANTS = {
    "reference": selective_scan_reference,
    "sequential-unbind": sequential_unbind,
    "torch": selective_scan_torch,
    "torch-one-chunk": lambda *a, **k: selective_scan_torch(*a, chunk_size=LENGTH, **k),
}


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


def forward_backward(variant: str, inputs: dict[str, torch.Tensor]) -> float:
    """Seconds for one forward + backward pass."""
    for t in inputs.values():
        t.grad = None
    start = time.perf_counter()
    VARIANTS[variant](**inputs, delta_softplus=True).sum().backward()
    return time.perf_counter() - start


def peak_live_mib(variant: str, inputs: dict[str, torch.Tensor]) -> float:
    """Peak of live tensor bytes (MiB) allocated during one forward + backward."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(variant, inputs)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=1)
    args = parser.parse_args()

    inputs = make_inputs()
    y_ref = selective_scan_reference(**{k: v.detach() for k, v in inputs.items()}, delta_softplus=True)
    y = selective_scan_torch(**{k: v.detach() for k, v in inputs.items()}, delta_softplus=True)
    err = ((y - y_ref).norm() / y_ref.norm()).item()

    times = {}
    for variant in VARIANTS:
        repeats = args.reference_repeats if variant == "reference" else args.repeats
        if variant.startswith("torch"):
            forward_backward(variant, inputs)  # warm-up: the first checkpointed call imports lazily
        times[variant] = min(forward_backward(variant, inputs) for _ in range(repeats))
    naive_mib = BATCH * DIM * LENGTH * N * 4 / 2**20

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, dim {DIM}, N {N}, L {LENGTH}")
    print(f"relative error torch vs reference (forward): {err:.2e}")
    print(f"one naive (batch, dim, L, N) float32 tensor: {naive_mib:.1f} MiB")
    print("| variant | forward+backward (s, best) | vs reference | vs sequential-unbind | peak live tensors (MiB) |")
    print("|---|---|---|---|---|")
    for variant in VARIANTS:
        peak = f"{peak_live_mib(variant, inputs):.1f}" if variant.startswith("torch") else "-"
        speedups = f"{times['reference'] / times[variant]:.1f}x | {times['sequential-unbind'] / times[variant]:.1f}x"
        print(f"| {variant} | {times[variant]:.3f} | {speedups} | {peak} |")


if __name__ == "__main__":
    main()
