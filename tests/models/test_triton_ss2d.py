"""The fused Triton SS2D scan against the plain path (grid copied into scan order + reference scan).

On CPU the kernels run under Triton's interpreter, in one subprocess (this file run as a script), for
the reasons given in tests/models/conftest.py; each case's relative errors come back as JSON.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

# (batch, H, W, dim, N, strided B/C, Config's block fields): square and non-square grids, H*W not a
# multiple of the chunks, dim not a multiple of the channel blocks, N not a power of 2
SMALL = dict(block_d=2, seq_chunk=4, seq_block_d=2, par_chunk=4, par_block_d=2, par_warps=1)
CASES = {
    "square": (1, 4, 4, 4, 4, False, SMALL),
    "wide_ragged": (2, 3, 5, 3, 4, True, SMALL),
    "tall_block": (1, 6, 2, 6, 3, True, dict(SMALL, block_d=4, seq_chunk=8, seq_block_d=4, par_block_d=4)),
}
BACKWARDS = ("sequential", "parallel", "segmented")  # triton_ss2d.force_layout's
NAMES = ("out", "u", "delta", "A", "B", "C", "D", "delta_bias")


def make_inputs(batch, height, width, dim, N, strided, device="cpu", dtype=torch.float32, seed=0):
    """Random SS2D scan inputs on the grid; with `strided`, B and C are views into one (.., 4, R + 2N) tensor."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    grid = (batch, height, width)
    if strided:
        x_dbl = rand(*grid, 4, 3 + 2 * N).to(device, dtype).requires_grad_()
        B, C = x_dbl[..., 3 : 3 + N], x_dbl[..., 3 + N :]
    else:
        B, C = (rand(*grid, 4, N).to(device, dtype).requires_grad_() for _ in range(2))
    inputs = {
        "u": rand(*grid, dim).to(device, dtype),
        "delta": (rand(*grid, 4, dim) * 0.5 - 1.0).to(device, dtype),
        "A": -torch.rand(4 * dim, N, generator=gen).to(device) * 2 - 0.1,
        "D": rand(4 * dim).to(device),
        "delta_bias": (rand(4 * dim) * 0.3).to(device),
    }
    inputs = {k: v.requires_grad_() for k, v in inputs.items()}
    return {**inputs, "B": B, "C": C}


def relative_errors(fn, inputs, reference) -> dict[str, float]:
    """||got - want|| / ||want|| of the output and of every input's gradient, against the reference."""
    results = {}
    names = NAMES[1:]
    for label, f in (("got", fn), ("want", reference)):
        out = f(**inputs)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
        grads = torch.autograd.grad((out * weights).sum(), [inputs[k] for k in names])
        results[label] = [out.detach().double()] + [g.double() for g in grads]
    return {
        name: ((got - want).norm() / want.norm()).item()
        for name, got, want in zip(NAMES, results["got"], results["want"])
    }


def _interpreter_worker() -> None:
    """Run every CPU case under the interpreter and print their errors as JSON."""
    from models.scan import triton_ss2d
    from models.ss2d import ss2d_scan_plain

    report = {}
    for (case, (batch, height, width, dim, N, strided, blocks)), backward in itertools.product(
        CASES.items(), BACKWARDS
    ):
        inputs = make_inputs(batch, height, width, dim, N, strided)
        unsplit = triton_ss2d.Config(**blocks, seq_min_programs=0, split_programs=0, min_segment=0)
        config = triton_ss2d.force_layout(unsplit, backward, batch, dim)
        layout = triton_ss2d.plan(batch, height * width, dim, config)

        def fn(u, delta, A, B, C, D, delta_bias, config=config):
            return triton_ss2d.SS2DScanTriton.apply(u, delta, A, B, C, D, delta_bias, config)

        errs = report[f"{case}-{backward}"] = relative_errors(fn, inputs, ss2d_scan_plain)
        errs["layout"] = [layout.sequential, layout.segments]
        with torch.no_grad():  # inference skips storing chunk-start states: the output must not change
            errs["out_no_grad"] = (
                (fn(**inputs) - ss2d_scan_plain(**inputs)).norm() / ss2d_scan_plain(**inputs).norm()
            ).item()
    print(json.dumps(report))


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_interpreter_matches_plain_path(interpreter_errors, case, backward):
    errs = interpreter_errors[f"{case}-{backward}"]
    sequential, segments = errs.pop("layout")
    assert (sequential, segments > 1) == (backward != "parallel", backward == "segmented")
    assert set(errs) == set(NAMES) | {"out_no_grad"}
    assert all(e < 1e-4 for e in errs.values()), errs


@pytest.mark.parametrize(
    ("batch", "length", "dim", "expected"),
    [
        (16, 1024, 256, (True, 1)),  # Moving-MNIST's first stage: 1024 programs fill the GPU unsplit
        (4, 4096, 256, (True, 8)),  # KTH at batch 4: 256 programs, split to 2048
        (1, 8192, 256, (True, 32)),  # 64 programs, split to 2048
        (1, 1024, 256, (False, 1)),  # segments of 128 steps give 512 programs at most: the chunk-parallel backward
        (4, 300, 256, (False, 1)),  # 256 programs, split once at most: too few, the chunk-parallel backward runs
        (1, 64, 32, (False, 1)),
    ],
)
def test_plan_splits_only_where_programs_are_too_few(batch, length, dim, expected):
    from models.scan import triton_ss2d

    layout = triton_ss2d.plan(batch, length, dim, triton_ss2d.CONFIG)
    assert (layout.sequential, layout.segments) == expected
    assert layout.seg_chunks * layout.segments >= layout.n_chunks > layout.seg_chunks * (layout.segments - 1)
    assert layout.n_chunks * layout.chunk >= length


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_matches_plain_path(dtype, backward):
    from models.scan import triton_ss2d
    from models.ss2d import ss2d_scan_plain

    config = triton_ss2d.force_layout(triton_ss2d.CONFIG, backward, 2, 64)

    def fn(u, delta, A, B, C, D, delta_bias):
        return triton_ss2d.SS2DScanTriton.apply(u, delta, A, B, C, D, delta_bias, config)

    inputs = make_inputs(2, 12, 20, 64, 16, True, device="cuda", dtype=dtype)
    errs = relative_errors(fn, inputs, ss2d_scan_plain)
    # float32 results agree to rounding; gradients of bf16 inputs are rounded to bf16 on both sides
    tol = {k: 1e-4 if k in ("out", "A", "D", "delta_bias") or dtype == torch.float32 else 1e-2 for k in errs}
    assert all(errs[k] < tol[k] for k in errs), errs


@pytest.mark.parametrize(("rank", "kept"), [(16, True), (8, False)])
def test_kernel_inputs_copy_b_and_c_only_where_vector_loads_cannot_read_them(rank, kept):
    """B and C cut from one (.., 4, rank + 2N) tensor stay views where every stride is a multiple of 16 (the
    kernels then load 8 of their values at once); SS2D's usual rank 8 gives strides of 40: they are copied."""
    from models.scan import triton_ss2d

    N = 16
    x_dbl = torch.randn(2, 3, 5, 4, rank + 2 * N)
    B, C = x_dbl[..., rank : rank + N], x_dbl[..., rank + N :]
    u, delta = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 4, 8)
    _, _, _, B2, C2, _, _ = triton_ss2d._kernel_inputs(
        u, delta, torch.randn(32, N), B, C, torch.ones(32), torch.zeros(32)
    )
    assert torch.equal(B2, B) and torch.equal(C2, C)
    assert (B2.data_ptr() == B.data_ptr() and C2.data_ptr() == C.data_ptr()) == kept
    assert triton_ss2d._bc_strides(B2) == triton_ss2d._bc_strides(C2)
    assert all(s % 16 == 0 for s in triton_ss2d._bc_strides(B2))


if __name__ == "__main__":
    _interpreter_worker()
