"""mamba_ssm's CUDA selective-scan kernel behind our backend signature (imported only when asked for)."""

from __future__ import annotations

from torch import Tensor

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError as error:  # re-raised with the reason, so get_backend("auto") can fall back
    raise ImportError(f"the 'mamba' scan backend needs mamba_ssm with its CUDA kernel: {error}") from error


def selective_scan_mamba(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """mamba_ssm's `selective_scan_fn` on CUDA tensors; returns float32 like the other backends."""
    if not u.is_cuda:
        raise ValueError("the 'mamba' scan backend needs CUDA tensors; use backend 'torch' on CPU")
    y = selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return y.float()
