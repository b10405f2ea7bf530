"""SS2D, VMamba's 2-D selective-scan mixer: four directional scans over the token grid, merged back."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.scan import selective_scan

DIRECTIONS = 4  # row-major, column-major, and both reversed


def cross_scan(x: Tensor) -> Tensor:
    """(b, d, H, W) -> (b, 4, d, H*W): the grid read row by row, column by column, and both backwards."""
    rows_cols = torch.stack((x.flatten(2), x.transpose(2, 3).flatten(2)), dim=1)
    return torch.cat((rows_cols, rows_cols.flip(-1)), dim=1)


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(b, 4, d, H*W) -> (b, d, H, W): each direction put back on the grid, then summed."""
    b, _, d, _ = y.shape
    forward = y[:, :2] + y[:, 2:].flip(-1)
    rows = forward[:, 0].view(b, d, height, width)
    cols = forward[:, 1].view(b, d, width, height).transpose(2, 3)
    return rows + cols


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
        """(b, H, W, d_model) -> (b, H, W, d_model)."""
        b, height, width, _ = x.shape
        length = height * width
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        xs = cross_scan(x)  # (b, 4, d, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        y = selective_scan(
            xs.float().view(b, -1, length),
            dts.float().reshape(b, -1, length),
            -torch.exp(self.A_logs.float()),
            Bs.float(),
            Cs.float(),
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().view(-1),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        y = cross_merge(y.view(b, DIRECTIONS, self.d_inner, length), height, width)
        y = self.out_norm(y.permute(0, 2, 3, 1)).to(z.dtype) * F.silu(z)
        return self.out_proj(y)
