"""The plain sequential selective scan (Mamba S6): the oracle every fast backend is tested against."""

from __future__ import annotations

import torch
from torch import Tensor

from models.scan.inputs import ScanInputs, expand_groups, finish_output, prepare_delta, scan_signature


@scan_signature
def selective_scan_reference(x: ScanInputs) -> Tensor:
    """h_l = exp(dt_l A) h_{l-1} + dt_l B_l u_l, y_l = C_l h_l + D u_l, one step at a time; (b, d, L) float32."""
    u = x.u.float()
    dim = u.shape[1]
    delta = prepare_delta(x.delta, x.delta_bias, x.delta_softplus)
    A = x.A.float()
    B = expand_groups(x.B.float(), dim)
    C = expand_groups(x.C.float(), dim)
    h = u.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        dt = delta[:, :, i, None]
        h = torch.exp(dt * A) * h + dt * B[:, :, :, i] * u[:, :, i, None]
        ys.append((h * C[:, :, :, i]).sum(-1))
    y = torch.stack(ys, dim=-1)
    return finish_output(y, u, x.D, x.z)
