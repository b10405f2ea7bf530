"""Chunked parallel selective scan in plain PyTorch: the CPU default, exact to float32 rounding.

The sequence is cut into chunks that are scanned one after another (carrying the state), each under
activation checkpointing whenever gradients are recorded: a call keeps about its inputs' size for the backward
and recomputes a chunk's (batch, dim, chunk, N) intermediates there, one chunk at a time. So a train step that
calls the scan ~100 times holds none of them, and one call's peak grows with the chunk length, not with L.
Inside a chunk, short sub-chunks are solved in parallel with the cumulative-sum form
h_t = e^{S_t} sum_{s<=t} e^{-S_s} x_s, where S is the running sum of dt*A after the sub-chunk's first step; the
sub-chunk length is picked so that |S| stays below `_MAX_EXPONENT` and neither factor can overflow (length 1
needs no exponent at all, so any step size is exact). The states then pass from one sub-chunk to the next in a
short loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from models.scan.inputs import ScanInputs, finish_output, prepare_delta, scan_signature

_MAX_EXPONENT = 40.0  # e^40 ~ 2e17: room for inputs up to ~1e20 before float32 overflows
_MAX_SUBCHUNK = 32  # the in-sub-chunk sums are (sub x sub) matrix products: cost grows with sub
# On the CPU a chunk is cut so that one (batch, dim, chunk, N) float32 intermediate stays below this: glibc's
# malloc serves blocks over 32 MiB by mmap, whose pages fault afresh on every call (a call measured 1.8x slower
# with 35 MiB intermediates). Padding to whole sub-chunks at most doubles a chunk.
_CPU_CHUNK_BYTES = 16 * 2**20


def _subchunk_length(dt: Tensor, A: Tensor) -> int:
    """Longest sub-chunk over which |sum dt*A| cannot exceed `_MAX_EXPONENT`: dt (b, g, e, T), A (g, e, N)."""
    step = dt.detach().abs().amax(dim=(0, 3)) * A.detach().abs().amax(dim=-1)
    worst = float(step.max()) if step.numel() else 0.0
    if not math.isfinite(worst):
        return 1
    if worst * (_MAX_SUBCHUNK - 1) <= _MAX_EXPONENT:
        return _MAX_SUBCHUNK
    return 1 + int(_MAX_EXPONENT / worst)


def _scan_chunk(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor, sub: int) -> tuple[Tensor, Tensor]:
    """Scan one chunk from state h0 in sub-chunks of `sub` steps: u, dt (b, g, e, T); A (g, e, N);
    B, C (b, g, N, T); h0 (b, g, e, N). Returns y (b, g, e, T) and the final state."""
    b, g, e, length = u.shape
    n = A.shape[-1]
    pad = (0, -length % sub)  # dt = 0 and u = 0 past the end: the state stays as it is
    u, dt, B, C = (F.pad(t, pad) for t in (u, dt, B, C))
    nsub = u.shape[-1] // sub
    # Layout (b, g, e, nsub, N, sub): time last, so the in-sub-chunk cumulative sums are one matrix product.
    u, dt = u.view(b, g, e, nsub, 1, sub), dt.view(b, g, e, nsub, 1, sub)
    A = A.view(1, g, e, 1, n, 1)
    B = B.view(b, g, n, nsub, sub).transpose(2, 3).unsqueeze(2)
    C = C.view(b, g, n, nsub, sub).transpose(2, 3).unsqueeze(2)
    upper = torch.ones(sub, sub, dtype=u.dtype, device=u.device).triu()  # (w @ upper)[t] = sum_{s<=t} w[s]
    dt_after_first = F.pad(dt[..., 1:], (1, 0))
    with torch.autocast(u.device.type, enabled=False):  # the sums must stay float32 under bf16 autocast
        S = (dt_after_first * A) @ upper  # log-decay from each sub-chunk's first step
        grow = torch.exp(S)
        acc = (torch.exp(-S) * (dt * u * B)) @ upper  # state of each sub-chunk started from 0 is grow * acc
    first = torch.exp(dt[..., 0] * A[..., 0])  # decay of the incoming state over the first step
    decay_end = (grow[..., -1] * first).unbind(3)
    h_end = (grow[..., -1] * acc[..., -1]).unbind(3)
    starts = []
    h = h0
    for i in range(nsub):
        starts.append(h)
        h = decay_end[i] * h + h_end[i]
    h_all = grow * (acc + (first * torch.stack(starts, dim=3)).unsqueeze(-1))
    y = (h_all * C).sum(-2).view(b, g, e, nsub * sub)[..., :length]
    return y, h


@scan_signature
def selective_scan_torch(x: ScanInputs, chunk_size: int = 256) -> Tensor:
    """Same contract as `selective_scan_reference`; holds at most (batch, dim, chunk_size, N) at once, and on the
    CPU chunks of at most `_CPU_CHUNK_BYTES` per such tensor (before padding to whole sub-chunks)."""
    u = x.u.float()
    batch, dim, length = u.shape
    groups, n = x.B.shape[1], x.A.shape[1]
    delta = prepare_delta(x.delta, x.delta_bias, x.delta_softplus)
    A = x.A.float().view(groups, dim // groups, n)
    shape = (batch, groups, dim // groups, length)
    u_g, dt_g = u.reshape(shape), delta.reshape(shape)
    B, C = x.B.float(), x.C.float()
    h = u.new_zeros(batch, groups, dim // groups, n)
    if u.device.type == "cpu":
        chunk_size = max(1, min(chunk_size, _CPU_CHUNK_BYTES // max(1, batch * dim * n * 4)))
    ys = []
    for start in range(0, length, chunk_size):
        part = slice(start, start + chunk_size)
        sub = min(chunk_size, _subchunk_length(dt_g[..., part], A))
        args = (u_g[..., part], dt_g[..., part], A, B[..., part], C[..., part], h, sub)
        if torch.is_grad_enabled():
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args)
        ys.append(y)
    y = torch.cat(ys, dim=-1).view(batch, dim, length)
    return finish_output(y, u, x.D, x.z)
