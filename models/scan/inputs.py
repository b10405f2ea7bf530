"""The selective scan's arguments, handled in one place for every backend.

Every backend is called as mamba_ssm's `selective_scan_fn`: u, delta (batch, dim, L); A (dim, N); B, C
(batch, groups, N, L); D, delta_bias (dim) or None; z (batch, dim, L) or None; delta_softplus. A backend is
written as `body(inputs: ScanInputs, **options)` under `@scan_signature`, which gives it that signature and
checks the shapes. The plain backends share the steps before and after the recurrence: `prepare_delta`,
`expand_groups` and `finish_output`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor


class ScanInputs(NamedTuple):
    """One scan's arguments, in selective_scan_fn's order (so `*inputs` passes them on as they came)."""

    u: Tensor  # (batch, dim, L)
    delta: Tensor  # (batch, dim, L): the step size before delta_bias and softplus
    A: Tensor  # (dim, N)
    B: Tensor  # (batch, groups, N, L); channel d uses group d // (dim // groups)
    C: Tensor  # (batch, groups, N, L)
    D: Tensor | None = None  # (dim): y gains D * u
    z: Tensor | None = None  # (batch, dim, L): y is gated by SiLU(z)
    delta_bias: Tensor | None = None  # (dim)
    delta_softplus: bool = False


def scan_signature(body: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """`body(inputs: ScanInputs, **options)` as a function of selective_scan_fn's arguments and body's options."""

    def scan(
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None = None,
        z: Tensor | None = None,
        delta_bias: Tensor | None = None,
        delta_softplus: bool = False,
        **options: Any,
    ) -> Tensor:
        dim, groups = u.shape[1], B.shape[1]
        if dim % groups:
            raise ValueError(f"dim {dim} is not a multiple of groups {groups}")
        return body(ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus), **options)

    # named and documented as body, while its signature stays the one above
    scan.__module__, scan.__name__, scan.__qualname__ = body.__module__, body.__name__, body.__qualname__
    scan.__doc__ = body.__doc__
    return scan


def expand_groups(x: Tensor, dim: int) -> Tensor:
    """(batch, groups, N, L) -> (batch, dim, N, L): channel d uses group d // (dim // groups)."""
    return x.repeat_interleave(dim // x.shape[1], dim=1)


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
