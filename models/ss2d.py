"""SS2D, VMamba's 2-D selective-scan mixer: four directional scans over the token grid, merged back."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.scan import resolve_backend, selective_scan

DIRECTIONS = 4  # row-major, column-major, and both reversed


def to_scan_order(t: Tensor) -> Tensor:
    """(b, H, W, 4, c) -> (b, 4, c, H*W): direction k's slice read in its order (rows, columns, both reversed)."""
    t = t.permute(0, 3, 4, 1, 2)
    rows, cols = t.flatten(3), t.transpose(3, 4).flatten(3)
    return torch.stack((rows[:, 0], cols[:, 1], rows[:, 2].flip(-1), cols[:, 3].flip(-1)), dim=1)


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(b, 4, d, H*W) in scan order -> (b, H, W, d): each direction put back on the grid, then summed."""
    b, _, d, _ = y.shape
    forward = y[:, :2] + y[:, 2:].flip(-1)
    rows = forward[:, 0].view(b, d, height, width)
    cols = forward[:, 1].view(b, d, width, height).transpose(2, 3)
    return (rows + cols).permute(0, 2, 3, 1)


def dt_projection(dts: Tensor, weight: Tensor) -> Tensor:
    """Each direction's low-rank dt (b, H, W, 4, r) through its own (d, r) matrix of `weight` (4, d, r).

    Without gradients, one matmul against the block-diagonal (4r, 4d) matrix: the result is (b, H, W, 4, d)
    contiguous, the layout the fused scan reads (the einsum returns it direction-major, and the scan copies it).
    With gradients, the einsum: the block-diagonal form made a TaxiBJ train step on an H100 2% slower.
    """
    if torch.is_grad_enabled():
        return torch.einsum("bhwkr,kdr->bhwkd", dts, weight)
    grid = dts.shape[:3]
    return (dts.reshape(*grid, -1) @ torch.block_diag(*weight.transpose(1, 2))).view(*grid, *weight.shape[:2])


def ss2d_scan_plain(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor, backend: str = "reference"
) -> Tensor:
    """SS2D's four directional scans by copying the grid into scan order, any scan backend, and merging back.

    u (b, H, W, d) is scanned in all four directions; delta (b, H, W, 4, d), B and C (b, H, W, 4, N) hold
    each direction's own values on the grid; A (4d, N); D, delta_bias (4d). Returns (b, H, W, d) float32.
    """
    b, height, width, d = u.shape
    xs = to_scan_order(u.unsqueeze(3).expand(b, height, width, DIRECTIONS, d))
    y = selective_scan(
        xs.float().reshape(b, DIRECTIONS * d, -1),
        to_scan_order(delta).float().reshape(b, DIRECTIONS * d, -1),
        A.float(),
        to_scan_order(B).float(),
        to_scan_order(C).float(),
        D.float(),
        delta_bias=delta_bias.float(),
        delta_softplus=True,
        backend=backend,
    )
    return cross_merge(y.view(b, DIRECTIONS, d, -1), height, width)


def ss2d_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor, backend: str = "auto"
) -> Tensor:
    """`ss2d_scan_plain`'s result; the "triton" backend computes it with fused kernels that copy nothing."""
    if resolve_backend(backend, u.device) == "triton":
        from models.scan.triton_ss2d import ss2d_scan_triton

        return ss2d_scan_triton(u, delta, A, B, C, D, delta_bias)
    return ss2d_scan_plain(u, delta, A, B, C, D, delta_bias, backend)


def norm_gate(y: Tensor, z: Tensor, norm: nn.LayerNorm) -> Tensor:
    """SS2D's output gate: LayerNorm of the merged scan, in z's dtype, times SiLU(z)."""
    return norm(y).to(z.dtype) * F.silu(z)


def scan_norm_gate(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    delta_bias: Tensor,
    z: Tensor,
    norm: nn.LayerNorm,
    backend: str = "auto",
) -> Tensor:
    """`norm_gate(ss2d_scan(...), z, norm)`; in inference the "triton" backend fuses the directions' sum into the
    gate's kernel (models/triton_norm_gate.py) instead of summing, normalising, casting and gating one by one."""
    if not torch.is_grad_enabled() and resolve_backend(backend, u.device) == "triton":
        from models.scan.triton_ss2d import ss2d_directions_triton
        from models.triton_norm_gate import norm_gate_triton

        return norm_gate_triton(ss2d_directions_triton(u, delta, A, B, C, D, delta_bias), z, norm)
    return norm_gate(ss2d_scan(u, delta, A, B, C, D, delta_bias, backend), z, norm)


class SS2D(nn.Module):
    """in_proj -> (x, z); depthwise 3x3 conv + SiLU on x; four-way selective scan; LayerNorm; gate SiLU(z); out_proj.

    Parameters are laid out as in VMamba (stacked per direction) so counts match the official model.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        d_inner, rank = self.d_inner, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, kernel_size=3, padding=1, groups=d_inner)
        bound = d_inner**-0.5  # nn.Linear's default init, one matrix per direction
        self.x_proj_weight = nn.Parameter(torch.empty(DIRECTIONS, rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        self.dt_projs_weight = nn.Parameter(torch.empty(DIRECTIONS, d_inner, rank).uniform_(-(rank**-0.5), rank**-0.5))
        dt = torch.exp(torch.rand(DIRECTIONS, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(DIRECTIONS * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))  # S4D-real init: A = -(1, 2, ..., N)
        self.Ds = nn.Parameter(torch.ones(DIRECTIONS * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(b, H, W, d_model) -> (b, H, W, d_model); every tensor stays channels-last on the token grid."""
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)  # (b, H, W, d_inner)
        x_dbl = torch.einsum("bhwd,kcd->bhwkc", x, self.x_proj_weight)  # each direction's dt, B, C per token
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dts = dt_projection(dts, self.dt_projs_weight)
        y = scan_norm_gate(
            x,
            dts,
            -torch.exp(self.A_logs.float()),
            Bs,
            Cs,
            self.Ds,
            self.dt_projs_bias.view(-1),
            z,
            self.out_norm,
            backend=self.scan_backend,
        )
        return self.out_proj(y)
