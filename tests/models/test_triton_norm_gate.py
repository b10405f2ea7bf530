"""The fused inference gate (directions' sum + LayerNorm + SiLU(z) gate) against SS2D's plain `norm_gate`.

On CPU the kernels run under Triton's interpreter, in one subprocess (this file run as a script), for the
reasons given in tests/models/conftest.py; each case's relative errors come back as JSON.
"""

from __future__ import annotations

import json

import pytest
import torch

# name: (batch, H, W, d): d a power of two or not, rows of one token per program or several
CASES = {"ragged": (2, 3, 5, 6), "wide": (1, 4, 4, 64)}


def gate_inputs(batch, height, width, dim, device="cpu", dtype=torch.float32, seed=0):
    """The scan's four outputs, z as SS2D slices it from in_proj's output (a strided view), a LayerNorm."""
    gen = torch.Generator().manual_seed(seed)
    y4 = torch.randn(batch, height, width, 4, dim, generator=gen).to(device)
    z = torch.randn(batch, height, width, 2 * dim, generator=gen).to(device, dtype)[..., dim:]
    norm = torch.nn.LayerNorm(dim).to(device)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(dim, generator=gen))
        norm.bias.copy_(0.5 * torch.randn(dim, generator=gen))
    return y4, z, norm


def gate_error(y4, z, norm) -> float:
    """||fused - plain|| / ||plain||, both in z's dtype."""
    from models.ss2d import norm_gate
    from models.triton_norm_gate import norm_gate_triton

    with torch.no_grad():
        got, want = norm_gate_triton(y4, z, norm), norm_gate(y4.sum(-2), z, norm)
    assert got.shape == want.shape and got.dtype == want.dtype
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def module_error(device="cpu", autocast=False) -> float:
    """An SS2D block on the "triton" backend: inference output (fused gate) against the same block with
    gradients on (plain scan merge and gate)."""
    from models.ss2d import SS2D

    torch.manual_seed(0)
    block = SS2D(16, scan_backend="triton").to(device)
    with torch.no_grad():  # LayerNorm starts as (1, 0): make both count
        block.out_norm.weight.normal_(1.0, 0.5)
        block.out_norm.bias.normal_(0.0, 0.5)
    x = torch.randn(2, 5, 6, 16, device=device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        with torch.no_grad():
            fused = block(x).float()
        plain = block(x).float().detach()
    return ((fused - plain).norm() / plain.norm()).item()


def _interpreter_worker() -> None:
    """Run every CPU case under the interpreter and print their errors as JSON."""
    report = {name: gate_error(*gate_inputs(*shape)) for name, shape in CASES.items()}
    y4, z, norm = gate_inputs(*CASES["ragged"])
    report["transposed"] = gate_error(y4.transpose(1, 2), z.transpose(1, 2), norm)  # z's tokens not evenly strided
    report["module"] = module_error()
    print(json.dumps(report))


@pytest.mark.parametrize("case", sorted(CASES) + ["transposed", "module"])
def test_interpreter_matches_plain_gate(interpreter_errors, case):
    assert interpreter_errors[case] < 1e-5, interpreter_errors


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dim", [256, 1024, 96])
def test_gpu_matches_plain_gate(dim):
    # bf16 z: the plain path rounds the normalised sum and SiLU(z) to bf16 before multiplying, the kernel once
    assert gate_error(*gate_inputs(4, 16, 12, dim, device="cuda", dtype=torch.bfloat16)) < 1e-2
    assert gate_error(*gate_inputs(4, 16, 12, dim, device="cuda")) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_module_inference_matches_training_path():
    assert module_error("cuda") < 1e-4
    assert module_error("cuda", autocast=True) < 2e-2


if __name__ == "__main__":
    _interpreter_worker()
