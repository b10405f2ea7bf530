"""Selective scan (Mamba S6) as Triton kernels (kernels/scan.py): their block shapes, launches and autograd Function.

The forward stores the state at every chunk start; the backward recomputes each chunk from there. The plain
reference of this fast path is `selective_scan_reference` (reference.py), the oracle of its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
from torch import Tensor

from models.scan.inputs import ScanInputs, scan_signature
from models.scan.kernels.common import require_device
from models.scan.kernels.scan import scan_bwd_kernel, scan_fwd_kernel


@dataclass(frozen=True, kw_only=True)
class Config:
    """Block shapes of the two kernels; benchmarks/gpu_scan.py sweeps them."""

    chunk: int  # steps between stored states (the backward restarts from the forward's chunk starts)
    fwd_block_d: int  # channels per forward program
    fwd_warps: int
    bwd_block_d: int  # channels per backward program
    bwd_warps: int


# best of a block/warp sweep on an H100 at the Moving-MNIST SS2D shape
CONFIG = Config(chunk=16, fwd_block_d=16, fwd_warps=1, bwd_block_d=4, bwd_warps=2)


def _block_d(block_d: int, dim_per_group: int) -> int:
    """The largest power of two <= block_d dividing dim_per_group, so a block never spans two groups."""
    while dim_per_group % block_d:
        block_d //= 2
    return block_d


def _flags(x: ScanInputs) -> dict[str, bool]:
    """The kernels' compile-time switches for the optional inputs."""
    return dict(
        HAS_D=x.D is not None, HAS_Z=x.z is not None, HAS_BIAS=x.delta_bias is not None, SOFTPLUS=x.delta_softplus
    )


def launch_forward(x: ScanInputs, config: Config) -> tuple[Tensor, Tensor]:
    """The forward kernel on contiguous inputs: the output (b, d, L) float32 and the chunk-start states."""
    batch, dim, L = x.u.shape
    groups, N = x.B.shape[1], x.A.shape[1]
    block_d = _block_d(config.fwd_block_d, dim // groups)
    n_chunks = triton.cdiv(L, config.chunk)
    out = torch.empty(batch, dim, L, device=x.u.device, dtype=torch.float32)
    hstart = torch.empty(batch, dim, n_chunks, N, device=x.u.device, dtype=torch.float32)
    scan_fwd_kernel[(dim // block_d, batch)](
        x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.delta_bias, out, hstart,
        dim, L, N, groups, dim // groups, n_chunks, **_flags(x),
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=config.chunk, num_warps=config.fwd_warps,
    )  # fmt: skip
    return out, hstart


def launch_backward(x: ScanInputs, hstart: Tensor, dout: Tensor, config: Config) -> tuple[Tensor | None, ...]:
    """The backward kernel: gradients of u, delta, A, B, C, D, z and delta_bias (None for absent inputs)."""
    batch, dim, L = x.u.shape
    groups, N = x.B.shape[1], x.A.shape[1]
    block_d = _block_d(config.bwd_block_d, dim // groups)
    f32 = dict(device=x.u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(x.u), torch.empty_like(x.delta)
    dz = torch.empty_like(x.z) if x.z is not None else None
    dA, dB, dC = torch.zeros(dim, N, **f32), torch.zeros(x.B.shape, **f32), torch.zeros(x.C.shape, **f32)
    dD = torch.zeros(dim, **f32) if x.D is not None else None
    dbias = torch.zeros(dim, **f32) if x.delta_bias is not None else None
    scan_bwd_kernel[(dim // block_d, batch)](
        x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.delta_bias, hstart, dout,
        du, ddelta, dA, dB, dC, dD, dz, dbias,
        dim, L, N, groups, dim // groups, triton.cdiv(L, config.chunk), **_flags(x),
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), BLOCK_L=config.chunk, num_warps=config.bwd_warps,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def _cast(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
    """A gradient in its input's dtype (the kernels write dA, dB, dC, dD and dbias in float32)."""
    return None if grad is None else grad.to(like.dtype)


class SelectiveScanTriton(torch.autograd.Function):
    """Autograd of the Triton scan: apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, config)."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        """The scan's output, with the inputs and chunk-start states saved for the backward."""
        *tensors, delta_softplus, config = args
        x = ScanInputs(*(None if t is None else t.contiguous() for t in tensors), delta_softplus)
        out, hstart = launch_forward(x, config)
        ctx.save_for_backward(*x[:-1], hstart)
        ctx.delta_softplus = delta_softplus
        ctx.config = config
        return out

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        """Every input's gradient, in that input's dtype."""
        *tensors, hstart = ctx.saved_tensors
        x = ScanInputs(*tensors, ctx.delta_softplus)
        grads = launch_backward(x, hstart, dout.contiguous(), ctx.config)
        return (*(_cast(grad, like) for grad, like in zip(grads, x)), None, None)


@scan_signature
def selective_scan_triton(x: ScanInputs) -> Tensor:
    """Selective scan with the semantics of `selective_scan_reference`, as Triton kernels; (b, d, L) float32."""
    require_device(x.u)
    return SelectiveScanTriton.apply(*x, CONFIG)
