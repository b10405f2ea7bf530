"""SS2D's step after the scan in inference, as one Triton kernel: sum the four directions, LayerNorm, gate by SiLU(z).

The plain path (models/ss2d.py) sums the scan's (b, H, W, 4, d) float32 output, LayerNorms it into a new float32
tensor, casts that to z's dtype, computes SiLU(z) and multiplies: five passes over memory. Here each token's row
is read once and its gated, normalised sum written once, in z's dtype. No backward: training keeps the plain path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor, nn

ROW_ELEMENTS = 2048  # tokens per program x padded channels: 8 tokens of 256 channels, 2 of 1024


@triton.jit
def _norm_gate_kernel(y4_ptr, z_ptr, weight_ptr, bias_ptr, out_ptr, tokens, dim, z_stride, eps,
                      BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """BLOCK_T tokens per program: their four directions' sum, normalised, scaled, shifted and gated."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_D)
    mask_d = cols < dim
    mask = (rows < tokens)[:, None] & mask_d[None, :]
    y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    for k in tl.static_range(4):
        y += tl.load(y4_ptr + (rows[:, None] * 4 + k) * dim + cols[None, :], mask=mask, other=0.0)
    mean = tl.sum(y, axis=1) / dim
    centred = tl.where(mask, y - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / dim + eps)
    weight = tl.load(weight_ptr + cols, mask=mask_d, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + cols, mask=mask_d, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + rows[:, None] * z_stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    out = (centred * rstd[:, None] * weight[None, :] + bias[None, :]) * (z * tl.sigmoid(z))
    tl.store(out_ptr + rows[:, None] * dim + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


def norm_gate_triton(y4: Tensor, z: Tensor, norm: nn.LayerNorm) -> Tensor:
    """`models.ss2d.norm_gate` of the directions' sum, fused: y4 (b, H, W, 4, d) float32; z (b, H, W, d), a slice of
    in_proj's output read in place; returns (b, H, W, d) in z's dtype."""
    y4 = y4.contiguous()
    dim = y4.shape[-1]
    rows = z.reshape(-1, dim)  # a view where the tokens are evenly strided (a slice of in_proj's output is)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty(z.shape, device=z.device, dtype=z.dtype)
    block_d = triton.next_power_of_2(dim)
    block_t = max(1, ROW_ELEMENTS // block_d)
    _norm_gate_kernel[(triton.cdiv(rows.shape[0], block_t),)](
        y4, rows, norm.weight, norm.bias, out, rows.shape[0], dim, rows.stride(0), norm.eps,
        BLOCK_T=block_t, BLOCK_D=block_d, num_warps=4,
    )  # fmt: skip
    return out
