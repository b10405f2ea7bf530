"""The Triton selective scan against the sequential reference: values and all gradients.

On CPU the kernels run under Triton's interpreter. TRITON_INTERPRET must be set before the kernels
are decorated, and another test may already have imported them compiled, so the interpreter cases
run in one subprocess (this file run as a script) and each case's errors come back as JSON.
"""

from __future__ import annotations

import json

import pytest
import torch

# (batch, dim, L, N, groups, D, z, delta_bias, softplus, config): L not a multiple of the chunk,
# groups > 1, every optional input on and off; config = triton_scan.Config's fields
SMALL = dict(chunk=4, fwd_block_d=2, fwd_warps=1, bwd_block_d=2, bwd_warps=1)
CASES = {
    "plain": (1, 2, 5, 4, 1, False, False, False, False, SMALL),
    "all_options": (2, 4, 11, 4, 2, True, True, True, True, SMALL),
    "groups_block_d": (1, 6, 9, 3, 3, True, False, True, True, dict(SMALL, chunk=8, fwd_block_d=4, bwd_block_d=4)),
    "z_no_softplus": (2, 2, 7, 2, 1, False, True, False, False, dict(SMALL, bwd_block_d=1)),
}
NAMES = ("out", "u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, L, N, groups, has_d, has_z, has_bias, device="cpu", dtype=torch.float32, seed=0):
    """Random scan inputs shaped as mamba's selective_scan_fn takes them, with realistic magnitudes."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    inputs = {
        "u": rand(batch, dim, L),
        "delta": rand(batch, dim, L) * 0.5 - 1.0,
        "A": -torch.rand(dim, N, generator=gen) * 2 - 0.1,
        "B": rand(batch, groups, N, L),
        "C": rand(batch, groups, N, L),
        "D": rand(dim) if has_d else None,
        "z": rand(batch, dim, L) if has_z else None,
        "delta_bias": rand(dim) * 0.3 if has_bias else None,
    }
    float_names = ("A", "D", "delta_bias")
    return {
        k: None if v is None else v.to(device, torch.float32 if k in float_names else dtype).requires_grad_()
        for k, v in inputs.items()
    }


def relative_errors(fn, inputs, softplus, reference) -> dict[str, float]:
    """||got - want|| / ||want|| of the output and of every input's gradient, against the reference."""
    results = {}
    for name, f in (("got", fn), ("want", reference)):
        for v in inputs.values():
            if v is not None:
                v.grad = None
        out = f(**inputs, delta_softplus=softplus)
        torch.manual_seed(1)
        (out * torch.randn_like(out)).sum().backward()
        results[name] = [out.detach().double()] + [
            None if inputs[k] is None else inputs[k].grad.double() for k in NAMES[1:]
        ]
    errs = {}
    for name, got, want in zip(NAMES, results["got"], results["want"]):
        if want is not None:
            errs[name] = ((got - want).norm() / want.norm()).item()
    return errs


def _interpreter_worker() -> None:
    """Run every CPU case under the interpreter and print their errors as JSON."""
    from models.scan import triton_scan
    from models.scan.reference import selective_scan_reference

    report = {}
    for case, (batch, dim, L, N, groups, has_d, has_z, has_bias, softplus, fields) in CASES.items():
        inputs = make_inputs(batch, dim, L, N, groups, has_d, has_z, has_bias)
        config = triton_scan.Config(**fields)

        def fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, config=config):
            return triton_scan.SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, config)

        report[case] = relative_errors(fn, inputs, softplus, selective_scan_reference)
    print(json.dumps(report))


@pytest.mark.parametrize("case", sorted(CASES))
def test_interpreter_matches_reference(interpreter_errors, case):
    errs = interpreter_errors[case]
    _, _, _, _, _, has_d, has_z, has_bias, _, _ = CASES[case]
    optional = {"D": has_d, "z": has_z, "delta_bias": has_bias}
    expected = {"out", "u", "delta", "A", "B", "C"} | {k for k, on in optional.items() if on}
    assert set(errs) == expected
    assert all(e < 1e-4 for e in errs.values()), errs


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch):
    pytest.importorskip("triton")
    from models.scan.triton_scan import selective_scan_triton

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="CUDA"):
        selective_scan_triton(x, x, torch.zeros(2, 4), torch.zeros(1, 1, 4, 3), torch.zeros(1, 1, 4, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_matches_reference(dtype):
    from models.scan.reference import selective_scan_reference
    from models.scan.triton_scan import selective_scan_triton

    inputs = make_inputs(2, 64, 300, 16, 4, True, True, True, device="cuda", dtype=dtype)
    errs = relative_errors(selective_scan_triton, inputs, True, selective_scan_reference)
    # float32 results agree to rounding; gradients of bf16 inputs are rounded to bf16 on both sides
    tol = {k: 1e-4 if k in ("out", "A", "D", "delta_bias") or dtype == torch.float32 else 1e-2 for k in errs}
    assert all(errs[k] < tol[k] for k in errs), errs


if __name__ == "__main__":
    _interpreter_worker()
