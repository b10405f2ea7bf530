"""Chunked parallel selective scan in plain PyTorch: the CPU default, exact to float32 rounding at any step size.

The sequence is cut into chunks that are scanned one after another, carrying the state. The scan is one autograd
Function with its own backward: the forward keeps its inputs and each chunk's starting state (a
(batch, dim, N) tensor per chunk), and the backward recomputes a chunk's (batch, dim, chunk, N) states there, one
chunk at a time, last chunk first. So a call keeps about its inputs' size for the backward (a train step that calls
the scan ~100 times holds none of the intermediates), and one call's peak grows with the chunk length, not with L.

Inside a chunk, short sub-chunks are solved in parallel. With a_t = dt_t A the log-decay of step t, S_t the sum of
a over the sub-chunk up to t, and P_t = S_t - S_mid taken from the sub-chunk's middle step (one matrix product
of a with a fixed (sub x sub) matrix of +1/-1/0),

    e^{a_t} h_{t-1} = e^{P_t} (e^{S_mid} h_start + sum_{s<t} e^{-P_s} x_s),   x_s = dt_s B_s u_s,   h_t = that + x_t.

The sub-chunk length is the longest for which |P| stays below `_MAX_EXPONENT` at the chunk's largest step, so
neither factor can overflow (length 1 needs no exponent at all, so any step size is exact). The states then pass
from one sub-chunk to the next in a short loop. The backward runs the same form backwards in time for the adjoint
state lam_t = dL/dh_t (lam_t = e^{-P_t} sum_{s>=t} e^{P_s} g_s + ..., the same two factors) and takes the
gradients from products of states and adjoints, e.g. dL/da_t = e^{a_t} h_{t-1} lam_t: no difference of large
terms is ever taken, so the gradients of A and delta stay exact when the per-step decay is large (differentiating
the forward's factorized sums by autograd cancels terms ~e^{a} times larger than the result).

Decays below e^{_FLUSH} (a sub-chunk's total, or the state carried into it) are taken as 0 rather than left as
float32 subnormals, which are exact to float32 rounding but an order of magnitude slower to multiply on x86.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from models.scan.inputs import ScanInputs, finish_output, prepare_delta, scan_signature

_MAX_EXPONENT = 40.0  # |P| <= 40: e^40 ~ 2e17 leaves room for inputs up to ~1e20 before float32 overflows
_MAX_SUBCHUNK = 32  # the in-sub-chunk sums are (sub x sub) matrix products: cost grows with sub
_FLUSH = -80.0  # e^-80 ~ 2e-35: a decay below it is 0 (its term is under float32 rounding of any fresh input)
# On the CPU a chunk is cut so that one (batch, dim, chunk, N) float32 intermediate stays below this: glibc's
# malloc serves blocks over 32 MiB by mmap, whose pages fault afresh on every call (a call measured 1.8x slower
# with 35 MiB intermediates). Padding to whole sub-chunks adds less than one sub-chunk to a chunk.
_CPU_CHUNK_BYTES = 16 * 2**20


def _subchunk_length(dt: Tensor, A: Tensor) -> int:
    """Longest sub-chunk (at most `_MAX_SUBCHUNK`) whose |P| cannot exceed `_MAX_EXPONENT`: dt (b, g, e, T),
    A (g, e, N). |P| sums at most (sub - 1) // 2 steps on either side of the middle step."""
    step = dt.detach().abs().amax(dim=(0, 3)) * A.detach().abs().amax(dim=-1)
    worst = float(step.max()) if step.numel() else 0.0
    if not math.isfinite(worst):
        return 1
    if worst * (_MAX_SUBCHUNK // 2) <= _MAX_EXPONENT:
        return _MAX_SUBCHUNK
    return 2 * int(_MAX_EXPONENT / worst) + 1


def _exp_flushed(x: Tensor) -> Tensor:
    """exp(x), 0 where x < `_FLUSH` (exp is not even asked for a subnormal: that is slow too)."""
    return torch.exp(F.threshold(x, _FLUSH, -math.inf))


@functools.lru_cache(maxsize=64)
def _matrices(sub: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For time-last tensors w (..., sub): (w @ M) = [P_0 .. P_{sub-1}, S_mid, S_end] for log-decays w, where
    P_t = sum w_{mid+1..t} for t > mid and -sum w_{t+1..mid} for t < mid, S_mid = sum w_{0..mid}, S_end = sum w;
    (w @ inclusive)_t = sum_{s<=t} w_s, (w @ exclusive)_t = sum_{s<t} w_s, (w @ reverse)_t = sum_{s>=t} w_s."""
    mid = (sub - 1) // 2
    k = torch.arange(sub, device=device)[:, None]
    t = torch.arange(sub, device=device)[None, :]
    M = torch.zeros(sub, sub + 2, dtype=dtype, device=device)
    M[:, :sub] = ((k > mid) & (k <= t)).to(dtype) - ((k > t) & (k <= mid)).to(dtype)
    M[:, sub] = (k[:, 0] <= mid).to(dtype)
    M[:, sub + 1] = 1.0
    ones = torch.ones(sub, sub, dtype=dtype, device=device)
    return M, ones.triu(), ones.triu(1), ones.tril()


class _Chunk:
    """One chunk in the sub-chunk layout (b, g, nsub, e, N, sub): time last within a sub-chunk (its sums are
    matrix products), sub-chunk before channel (one sub-chunk's (b, g, e, N) states lie together for the loop
    that passes them on). Holds the terms its forward and backward share. u, dt (b, g, e, T); A (g, e, N);
    B (b, g, N, T); T is padded to whole sub-chunks with dt = u = 0 (the state stays as it is)."""

    def __init__(self, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, sub: int) -> None:
        g, e, n = A.shape
        self.length, self.sub, self.nsub = u.shape[-1], sub, -(-u.shape[-1] // sub)
        self.M, self.inclusive, self.exclusive, self.reverse = _matrices(sub, u.dtype, u.device)
        self.dt = self.lay(dt)  # (b, g, nsub, e, 1, sub)
        self.dtu = self.dt * self.lay(u)  # x_t = dt_t u_t B_t
        self.A = A.view(1, g, 1, e, n, 1)
        self.B = self.lay_shared(B)  # (b, g, nsub, 1, N, sub)
        if sub == 1:  # one step per sub-chunk: no factors, the decays themselves
            self.grow = self.shrink = None
            self.head = _exp_flushed(self.dt * self.A)
            self.decay_end = self.head[..., 0]
            return
        # a_t = dt_t A, and A is constant in time: the sums of a are A times the sums of dt
        dt_sums = self.dt @ self.M  # (b, g, nsub, e, 1, sub + 2)
        self.grow = (dt_sums[..., :sub] * self.A).exp_()  # e^{P}: within e^{+-_MAX_EXPONENT}
        self.shrink = torch.reciprocal(self.grow)  # e^{-P}
        ends = dt_sums[..., sub:] * self.A
        self.head = _exp_flushed(ends[..., :1])  # e^{S_mid}: decay of the incoming state to mid
        self.decay_end = _exp_flushed(ends[..., 1])  # e^{S_end}: over the whole sub-chunk

    def _padded(self, t: Tensor) -> Tensor:
        """(b, g, c, T) -> (b, g, c, nsub, sub), zeros past T."""
        return F.pad(t, (0, self.nsub * self.sub - t.shape[-1])).unflatten(-1, (self.nsub, self.sub))

    def lay(self, t: Tensor) -> Tensor:
        """A per-channel (b, g, e, T) -> (b, g, nsub, e, 1, sub)."""
        return self._padded(t).transpose(2, 3).unsqueeze(4).contiguous()

    def lay_shared(self, t: Tensor) -> Tensor:
        """B or C (b, g, N, T) -> (b, g, nsub, 1, N, sub) (a view of the padded copy)."""
        return self._padded(t).transpose(2, 3).unsqueeze(3)

    def unlay(self, t: Tensor) -> Tensor:
        """(b, g, nsub, c, [1,] sub) -> (b, g, c, T): the chunk's steps, padding dropped."""
        b, g, _, c = t.shape[:4]
        return t.reshape(b, g, self.nsub, c, self.sub).transpose(2, 3).reshape(b, g, c, -1)[..., : self.length]

    def _pass_states(self, h0: Tensor, local_end: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
        """The sub-chunks' starting states (b, g, nsub, e, N, 1), passed from h0 through h -> decay_end h +
        local_end (local_end: each sub-chunk's end state started from 0, (b, g, nsub, e, N)); and the last state.
        With `reverse`, the same backwards in time: the adjoints at the sub-chunks' ends, and the first's."""
        decay, local = self.decay_end.unbind(2), local_end.unbind(2)
        out = torch.empty((self.nsub + 1, *h0.shape), dtype=h0.dtype, device=h0.device)
        k = self.nsub if reverse else 0
        out[k] = h0
        for i in reversed(range(self.nsub)) if reverse else range(self.nsub):
            nxt = i if reverse else i + 1
            torch.addcmul(local[i], decay[i], out[k], out=out[nxt])
            k = nxt
        passed = out[1:] if reverse else out[:-1]
        return passed.movedim(0, 2).unsqueeze(-1), out[k]

    def states(self, h0: Tensor, decayed: bool = False) -> tuple[Tensor, Tensor]:
        """From state h0 (b, g, e, N): the states h_t (b, g, nsub, e, N, sub), or with `decayed` the decayed
        previous states e^{a_t} h_{t-1} (h_t less x_t); and the final state."""
        if self.grow is None:
            x = self.B * self.dtu
            starts, h = self._pass_states(h0, x[..., 0])
            prev = self.head * starts
            return (prev if decayed else prev.add_(x)), h
        acc = (torch.mul(self.shrink, self.B).mul_(self.dtu)) @ (self.exclusive if decayed else self.inclusive)
        local_end = self.grow[..., -1] * acc[..., -1]  # each sub-chunk's end state, started from 0
        if decayed:
            local_end += self.dtu[..., -1] * self.B[..., -1]
        starts, h = self._pass_states(h0, local_end)
        return self.grow * torch.addcmul(acc, self.head, starts), h

    def adjoints(self, gy: Tensor, C: Tensor, lam_end: Tensor) -> tuple[Tensor, Tensor]:
        """Adjoint states lam_t = dL/dh_t (b, g, nsub, e, N, sub), from gy = dL/dy (b, g, nsub, e, 1, sub), C in
        the layout and lam_end = dL/d(final state); and dL/d(starting state)."""
        if self.grow is None:
            G = C * gy
            ends, lam = self._pass_states(lam_end, self.head[..., 0] * G[..., 0], reverse=True)
            return G.add_(ends), lam
        acc = (torch.mul(self.grow, C).mul_(gy)) @ self.reverse  # sum_{s>=t} e^{P_s} G_s, G_s = gy_s C_s
        # dL/d(sub-chunk's start) from its own steps: e^{S_mid} acc_0; the later ones' come in through decay_end
        ends, lam = self._pass_states(lam_end, self.head[..., 0] * acc[..., 0], reverse=True)
        grow_end = self.grow[..., -1:]  # e^{S_end - S_mid}
        return self.shrink * torch.addcmul(acc, grow_end, ends), lam


def _scan_chunk(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor, sub: int) -> tuple[Tensor, Tensor]:
    """Scan one chunk from state h0 in sub-chunks of `sub` steps: u, dt (b, g, e, T); A (g, e, N);
    B, C (b, g, N, T); h0 (b, g, e, N). Returns y (b, g, e, T) and the final state."""
    chunk = _Chunk(u, dt, A, B, sub)
    H, h = chunk.states(h0)
    return chunk.unlay((H * chunk.lay_shared(C)).sum(-2)), h


def _chunks(length: int, chunk_size: int) -> list[slice]:
    return [slice(start, start + chunk_size) for start in range(0, length, chunk_size)]


class _SelectiveScan(torch.autograd.Function):
    """y (b, g, e, L) from u, dt (b, g, e, L), A (g, e, N), B, C (b, g, N, L): float32, grouped."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
        b, g, e, length = u.shape
        h = u.new_zeros(b, g, e, A.shape[-1])
        starts, subs, ys = [], [], []
        for part in _chunks(length, chunk_size):
            subs.append(min(chunk_size, _subchunk_length(dt[..., part], A)))
            starts.append(h)
            y, h = _scan_chunk(u[..., part], dt[..., part], A, B[..., part], C[..., part], h, subs[-1])
            ys.append(y)
        ctx.save_for_backward(u, dt, A, B, C, *starts)
        ctx.chunk_size, ctx.subs = chunk_size, subs
        return torch.cat(ys, dim=-1)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        """Chunk by chunk, last first, carrying dL/d(state) back: recompute the chunk's states, run its adjoints,
        and take every gradient from products of the two."""
        u, dt, A, B, C, *starts = ctx.saved_tensors
        need_u, need_dt, need_A, need_B, need_C = ctx.needs_input_grad[:5]
        gy = gy.float()
        du, ddt, dB, dC = (
            torch.zeros_like(t) if need else None for t, need in ((u, need_u), (dt, need_dt), (B, need_B), (C, need_C))
        )
        dA = torch.zeros_like(A) if need_A else None
        lam_end = torch.zeros_like(starts[0])
        with torch.autocast(u.device.type, enabled=False):
            for part, sub, h0 in reversed(list(zip(_chunks(u.shape[-1], ctx.chunk_size), ctx.subs, starts))):
                chunk = _Chunk(u[..., part], dt[..., part], A, B[..., part], sub)
                decayed, _ = chunk.states(h0, decayed=True)  # e^{a_t} h_{t-1}
                gyl = chunk.lay(gy[..., part])
                if need_C:  # dC = sum_e gy h, h_t = e^{a_t} h_{t-1} + dt_t u_t B_t
                    dC_l = (decayed * gyl).sum(3) + chunk.B[:, :, :, 0] * (gyl * chunk.dtu).sum(3)
                    dC[..., part] = chunk.unlay(dC_l)
                lam, lam_end = chunk.adjoints(gyl, chunk.lay_shared(C[..., part]), lam_end)  # dL/dx_t = lam_t
                if need_u or need_dt:
                    lam_B = (lam * chunk.B).sum(-2, keepdim=True)  # sum_n lam B: (b, g, nsub, e, 1, sub)
                if need_u:
                    du[..., part] = chunk.unlay(lam_B * chunk.dt)
                if need_B:
                    dB[..., part] = chunk.unlay((lam * chunk.dtu).sum(3))
                da = decayed.mul_(lam)  # dL/da_t = e^{a_t} h_{t-1} lam_t
                del lam
                if need_dt:
                    u_l = chunk.lay(u[..., part])
                    ddt[..., part] = chunk.unlay(torch.addcmul((da * chunk.A).sum(-2, keepdim=True), lam_B, u_l))
                if need_A:
                    dA += (da * chunk.dt).sum(dim=(0, 2, 5))
        return du, ddt, dA, dB, dC, None


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
    if u.device.type == "cpu":
        chunk_size = max(1, min(chunk_size, _CPU_CHUNK_BYTES // max(1, batch * dim * n * 4)))
    with torch.autocast(u.device.type, enabled=False):  # the sums must stay float32 under bf16 autocast
        y = _SelectiveScan.apply(u.reshape(shape), delta.reshape(shape), A, x.B.float(), x.C.float(), chunk_size)
    return finish_output(y.view(batch, dim, length), u, x.D, x.z)
