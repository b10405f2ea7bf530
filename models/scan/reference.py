"""The plain sequential selective scan (Mamba S6): the oracle every fast backend is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_groups(x: Tensor, dim: int) -> Tensor:
    """(batch, groups, N, L) -> (batch, dim, N, L): channel d uses group d // (dim // groups)."""
    groups = x.shape[1]
    if dim % groups:
        raise ValueError(f"dim {dim} is not a multiple of groups {groups}")
    return x.repeat_interleave(dim // groups, dim=1)


def prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """The effective step size: delta (+ bias), softplus'd when asked, in float32."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def finish_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """y + D*u, gated by SiLU(z) when z is given."""
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan_reference(
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
    """h_l = exp(dt_l A) h_{l-1} + dt_l B_l u_l, y_l = C_l h_l + D u_l, one step at a time.

    Shapes as mamba_ssm's selective_scan_fn: u, delta (b, d, L); A (d, N); B, C (b, g, N, L);
    D, delta_bias (d,); z (b, d, L). Returns (b, d, L) float32.
    """
    u = u.float()
    dim = u.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    A = A.float()
    B = expand_groups(B.float(), dim)
    C = expand_groups(C.float(), dim)
    h = u.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        dt = delta[:, :, i, None]
        h = torch.exp(dt * A) * h + dt * B[:, :, :, i] * u[:, :, i, None]
        ys.append((h * C[:, :, :, i]).sum(-1))
    y = torch.stack(ys, dim=-1)
    return finish_output(y, u, D, z)
