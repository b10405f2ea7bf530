"""mamba_ssm's CUDA selective-scan kernel as a backend (imported only when asked for)."""

from __future__ import annotations

from torch import Tensor

from models.scan.inputs import ScanInputs, scan_signature

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError as error:  # re-raised with the reason, so get_backend("auto") can fall back
    raise ImportError(f"the 'mamba' scan backend needs mamba_ssm with its CUDA kernel: {error}") from error


@scan_signature
def selective_scan_mamba(x: ScanInputs) -> Tensor:
    """mamba_ssm's `selective_scan_fn` on CUDA tensors; returns float32 like the other backends."""
    if not x.u.is_cuda:
        raise ValueError("the 'mamba' scan backend needs CUDA tensors; use backend 'torch' on CPU")
    return selective_scan_fn(*x).float()
