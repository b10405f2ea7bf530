"""Every selective-scan backend against the sequential reference: values and all gradients."""

from __future__ import annotations

import importlib.util
import inspect
import math

import pytest
import torch

from models.scan import (
    get_backend,
    resolve_backend,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
    torch_scan,
)

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch: int, dim: int, length: int, n: int, groups: int, step: float = 1.0, seed: int = 0) -> dict:
    """Random scan inputs in mamba_ssm's shapes; `step` scales A (large = fast-decaying states)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": 0.5 * torch.randn(batch, dim, length, generator=gen),
        "A": -step * torch.exp(torch.randn(dim, n, generator=gen)),
        "B": torch.randn(batch, groups, n, length, generator=gen),
        "C": torch.randn(batch, groups, n, length, generator=gen),
        "D": torch.randn(dim, generator=gen),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.randn(dim, generator=gen),
    }
    return {k: v.requires_grad_() for k, v in tensors.items()}


def run(scan, inputs: dict, **kwargs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Output and gradients of a fixed random projection of it with respect to every input."""
    y = scan(**inputs, delta_softplus=True, **kwargs)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype, device=y.device)
    grads = torch.autograd.grad((y * weights).sum(), list(inputs.values()))
    return y, grads


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def assert_matches_reference(scan, inputs: dict, **kwargs) -> None:
    y_ref, g_ref = run(selective_scan_reference, inputs)
    y, grads = run(scan, inputs, **kwargs)
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-4
    for name, g, g0 in zip(NAMES, grads, g_ref):
        assert g.shape == g0.shape, name
        assert rel_err(g, g0) < 1e-4, f"gradient of {name}: rel err {rel_err(g, g0):.2e}"


SHAPES = [  # batch, dim, length, N, groups
    (2, 8, 37, 4, 1),
    (1, 12, 100, 16, 4),
    (2, 6, 67, 8, 3),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("chunk_size", [16, 256])
def test_torch_scan_matches_reference(shape, chunk_size):
    assert_matches_reference(selective_scan_torch, make_inputs(*shape), chunk_size=chunk_size)


@pytest.mark.parametrize("step", [30.0, 1e4])
def test_torch_scan_exact_for_fast_decay(step):
    """Steps with |dt*A| far beyond exp's float32 range force one-step sub-chunks: still exact."""
    assert_matches_reference(selective_scan_torch, make_inputs(2, 8, 45, 4, 2, step=step), chunk_size=16)


def make_decay_inputs(
    batch: int, dim: int, length: int, n: int, groups: int, decay: float, spread: bool, seed: int = 0
):
    """Scan inputs whose per-step decay dt * |A| is `decay`: every state's (A = -1, softplus(delta + bias) =
    decay up to a +-10% jitter of delta) or, with `spread`, the states' median (|A| log-normal, so the largest
    step is ~30x the median)."""
    inputs = make_inputs(batch, dim, length, n, groups, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    dt = torch.full((dim,), decay)
    with torch.no_grad():
        inputs["delta_bias"].copy_(dt + torch.log(-torch.expm1(-dt)))
        bias = inputs["delta_bias"][:, None]
        # softplus' slope is sigmoid: this delta moves dt by ~10% of itself
        inputs["delta"].copy_(0.1 * torch.randn(batch, dim, length, generator=gen) * dt[:, None] / torch.sigmoid(bias))
        inputs["A"].copy_(-torch.exp(torch.randn(dim, n, generator=gen)) if spread else -torch.ones(dim, n))
    return inputs


DECAYS = [1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0]


@pytest.mark.parametrize("spread", [False, True], ids=["uniform", "spread"])
@pytest.mark.parametrize("decay", DECAYS)
def test_torch_scan_matches_reference_across_decays(decay, spread):
    """Output and every gradient (u, delta, A, B, C, D, z, delta_bias) within float32 rounding of the reference
    at per-step decays dt*|A| from 1e-3 to 10, over several chunks (chunk 64, L 150, groups 2): the sub-chunk
    length then ranges from 32 steps down to 9 (uniform) or 1 (spread)."""
    inputs = make_decay_inputs(2, 8, 150, 8, 2, decay, spread)
    assert_matches_reference(selective_scan_torch, inputs, chunk_size=64)


@pytest.mark.parametrize("decay", [30.0, 100.0, 1e4])
def test_torch_scan_finite_and_exact_for_huge_decays(decay):
    """Decays far past e^-88 (float32's smallest normal): the state is as good as reset each step; no NaN or
    inf, and the reference's values and gradients."""
    inputs = make_decay_inputs(1, 6, 40, 4, 1, decay, spread=False)
    assert_matches_reference(selective_scan_torch, inputs, chunk_size=16)
    y, grads = run(selective_scan_torch, inputs, chunk_size=16)
    assert all(torch.isfinite(t).all() for t in (y, *grads))


@pytest.mark.parametrize("step", [0.0, 1e-3, 0.5, 2.5, 2.6, 3.0, 10.0, 40.0, 41.0, math.inf])
def test_subchunk_length_keeps_factors_in_range(step):
    """The sub-chunk's factors e^{P}, e^{-P} stay within e^{+-_MAX_EXPONENT}: sub is 32 up to a step of 2.5,
    then 2 * floor(40 / step) + 1 (27 at 3, 9 at 10), and 1 past 40 (or when a step is not finite), which needs
    no factors."""
    dt = torch.full((1, 1, 2, 64), step)
    A = -torch.ones(1, 2, 4)
    sub = torch_scan._subchunk_length(dt, A)
    expected = 32 if step <= 2.5 else 2 * int(40 / step) + 1 if math.isfinite(step) else 1
    assert sub == expected
    chunk = torch_scan._Chunk(torch.randn(1, 1, 2, 64), dt, A, torch.randn(1, 1, 4, 64), sub)
    if sub > 1:
        bound = math.exp(torch_scan._MAX_EXPONENT) * (1 + 1e-5)
        assert chunk.grow.max() <= bound and chunk.shrink.max() <= bound
    else:  # one-step sub-chunks use the decays themselves
        assert chunk.grow is None and torch.isfinite(chunk.head).all()


def test_torch_scan_under_bf16_autocast_stays_float32():
    """Under CPU bf16 autocast the scan's sums stay float32: the same result as without autocast."""
    inputs = make_inputs(1, 8, 70, 4, 2, seed=4)
    expected = selective_scan_torch(**inputs, delta_softplus=True, chunk_size=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = selective_scan_torch(**inputs, delta_softplus=True, chunk_size=32)
    assert got.dtype == torch.float32 and rel_err(got, expected) < 1e-6


def test_torch_scan_long_sequence_several_chunks():
    """L = 300 with the default chunk (256): two chunks, the last one partial."""
    assert_matches_reference(selective_scan_torch, make_inputs(1, 4, 300, 8, 2, seed=3))


def test_torch_scan_without_optional_inputs():
    inputs = make_inputs(2, 6, 50, 4, 2, seed=5)
    core = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    expected = selective_scan_reference(**core)
    got = selective_scan_torch(**core, chunk_size=16)
    assert rel_err(got, expected) < 1e-4


def test_torch_scan_rejects_bad_groups():
    inputs = make_inputs(1, 6, 10, 4, 4)
    with pytest.raises(ValueError, match="multiple of groups"):
        selective_scan_torch(**inputs)


def test_interface_names():
    assert get_backend("reference") is selective_scan_reference
    assert get_backend("torch") is selective_scan_torch
    assert get_backend("auto", "cpu") is selective_scan_torch
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        get_backend("fast")


def test_auto_on_cuda_takes_triton_else_mamba():
    """Resolves by device type alone (no GPU needed): our Triton kernels when triton imports, else mamba_ssm."""
    expected = "triton" if importlib.util.find_spec("triton") else "mamba"
    assert resolve_backend("auto", "cuda") == expected and resolve_backend("auto", "cpu") == "torch"
    assert get_backend("auto", "cuda") is get_backend(expected)
    assert get_backend("auto", "cuda") is get_backend("auto", torch.device("cuda", 0))


def test_backends_share_one_signature_and_its_checks():
    """Each backend takes selective_scan_fn's arguments, checked in one place (models/scan/inputs.py); the
    dispatcher passes a backend's own options on."""
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus", "options"]
    for scan in (selective_scan, selective_scan_reference, selective_scan_torch):
        assert list(inspect.signature(scan).parameters) == names
        with pytest.raises(ValueError, match="multiple of groups"):
            scan(**make_inputs(1, 6, 10, 4, 4))
    inputs = make_inputs(1, 4, 40, 4, 2)
    by_name = selective_scan(**inputs, delta_softplus=True, backend="torch", chunk_size=16)
    assert torch.equal(by_name, selective_scan_torch(**inputs, delta_softplus=True, chunk_size=16))


def test_interface_dispatches_to_backend():
    inputs = make_inputs(1, 4, 20, 4, 1)
    y_ref = selective_scan(**inputs, backend="reference")
    y_auto = selective_scan(**inputs, backend="auto")
    assert rel_err(y_auto, y_ref) < 1e-4


def test_mamba_backend_refuses_cpu_tensors():
    if importlib.util.find_spec("mamba_ssm") is None:
        with pytest.raises(ImportError, match="mamba_ssm"):
            get_backend("mamba")
    else:
        with pytest.raises(ValueError, match="CUDA"):
            selective_scan(**make_inputs(1, 4, 8, 4, 1), backend="mamba")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the mamba backend needs a CUDA GPU")
@pytest.mark.parametrize("shape", SHAPES)
def test_mamba_scan_matches_reference(shape):
    pytest.importorskip("mamba_ssm", reason="mamba_ssm is not installed")
    inputs = {k: v.detach().cuda().requires_grad_() for k, v in make_inputs(*shape).items()}
    assert_matches_reference(get_backend("mamba"), inputs)


@pytest.mark.parametrize("length", [100, 300])  # one chunk, two chunks
def test_torch_scan_keeps_input_sized_tensors_for_backward(length):
    """A train step calls the scan ~100 times; each call keeps about its inputs' size for the backward and
    recomputes its (batch, dim, L, N) intermediates there, or a CPU step needs ~N times the memory."""
    inputs = make_inputs(2, 16, length, 16, 4, seed=7)
    saved: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        y = selective_scan_torch(**inputs, delta_softplus=True)
    input_bytes = sum(t.numel() * t.element_size() for t in inputs.values())
    assert 0 < sum(saved.values()) <= 2 * input_bytes
    y.sum().backward()
    assert all(t.grad is not None for t in inputs.values())


def test_torch_scan_cuts_cpu_chunks_to_the_byte_budget(monkeypatch):
    """On the CPU no (batch, dim, chunk, N) intermediate exceeds `_CPU_CHUNK_BYTES` (glibc serves large blocks by
    mmap, page-faulting on every call); the result is still the reference's."""
    budget = 2 * 16 * 16 * 4 * 24  # 24 steps of (batch 2, dim 16, N 16) float32
    lengths = []
    scan_chunk = torch_scan._scan_chunk

    def recording(u, *args):
        lengths.append(u.shape[-1])
        return scan_chunk(u, *args)

    monkeypatch.setattr(torch_scan, "_CPU_CHUNK_BYTES", budget)
    monkeypatch.setattr(torch_scan, "_scan_chunk", recording)
    assert_matches_reference(selective_scan_torch, make_inputs(2, 16, 100, 16, 4, seed=7))
    assert set(lengths) == {24, 4}  # 100 steps: four chunks of 24 and one of 4
