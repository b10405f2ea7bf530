"""Selective scan (Mamba S6) as Triton kernels: one pass over the inputs forward, one reverse pass backward.

Each program owns one batch element and a block of channels. The forward steps through the sequence one
token at a time, keeping the (channels, N) state in registers (a step is one exp and two multiply-adds per
state), and stores the state at every chunk start. The backward walks the chunks in reverse: it recomputes
a chunk's states with `tl.associative_scan` from the stored start, then scans dL/dh back through the chunk.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice
from torch import Tensor

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")

# chunk length (shared: the backward restarts from the forward's chunk starts), then
# (block of channels, warps) of the forward and of the backward kernel
CONFIG = (16, 16, 1, 4, 2)  # best at the Moving-MNIST SS2D shape on an H100 (benchmarks/gpu/NOTES.md)


@triton.jit
def _linear_combine(a1, b1, a2, b2):
    """Compose x -> a1 x + b1 then x -> a2 x + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _log2(x):
    """log2 by the GPU's one-instruction approximation (error ~2^-22 on softplus's arguments, which lie in
    [1, 2]); libdevice's accurate log costs ~25 instructions, as many as three state updates. The interpreter
    has no libdevice: plain log2 there."""
    if INTERPRETED:
        return tl.log2(x)
    return libdevice.fast_log2f(x)


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + LN2 * _log2(1.0 + tl.exp2(-tl.abs(x) * LOG2E))


@triton.jit
def _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Effective step size dt (0 where masked, so masked steps keep the state) and its pre-softplus value."""
    raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _in_seq(mask, pos, L):
    """mask & (pos < L), broadcast to mask's shape (a scalar comparison is a plain bool in the interpreter)."""
    return mask & (tl.full(mask.shape, pos, tl.int32) < L)


@triton.jit
def _step_inputs(u_ptr, delta_ptr, B_ptr, C_ptr, offs, bc_offs, mask, bc_mask, bias, HAS_BIAS: tl.constexpr,
                 SOFTPLUS: tl.constexpr):
    """u, dt (0 where masked, so a masked step keeps the state), pre-softplus dt, B and C of one step."""
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    dt = tl.where(mask, dt, 0.0)
    Bv = tl.load(B_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
    return u, dt, raw, Bv, Cv


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, hstart_ptr,
    dim, L, N, groups, dim_per_group, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < N
    group = (pid_d * BLOCK_D) // dim_per_group

    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0.0).to(tl.float32)
    A2 = A * LOG2E
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d).to(tl.float32)

    row = (pid_b * dim + offs_d) * L
    bc_row = ((pid_b * groups + group) * N + offs_n) * L
    hs_offs = ((pid_b * dim + offs_d) * n_chunks)[:, None] * N + offs_n[None, :]
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for c in range(n_chunks):
        tl.store(hstart_ptr + hs_offs + c * N, h, mask=mask_n[None, :])
        for j in tl.static_range(CHUNK):
            pos = c * CHUNK + j
            valid = _in_seq(mask_d, pos, L)
            u, dt, _, Bv, Cv = _step_inputs(u_ptr, delta_ptr, B_ptr, C_ptr, row + pos, bc_row + pos,
                                            valid, _in_seq(mask_n, pos, L), bias, HAS_BIAS, SOFTPLUS)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv[None, :]
            y = tl.sum(h * Cv[None, :], axis=1)
            if HAS_D:
                y += u * Dv
            if HAS_Z:
                z = tl.load(z_ptr + row + pos, mask=valid, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + row + pos, y, mask=valid)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, hstart_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
    dim, L, N, groups, dim_per_group, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_n = offs_n < N
    group = (pid_d * BLOCK_D) // dim_per_group

    dn_offs = offs_d[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn_offs, mask=mask_n[None, :], other=0.0).to(tl.float32)
    A2 = A * LOG2E
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d).to(tl.float32)

    row = (pid_b * dim + offs_d) * L
    bc_row = ((pid_b * groups + group) * N + offs_n) * L
    hs_row = ((pid_b * dim + offs_d) * n_chunks)[:, None] * N + offs_n[None, :]
    first = (offs_l == 0)[None, None, :]
    last = (offs_l == BLOCK_L - 1)[None, None, :]
    g_next = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # dL/dh at the first step of the chunk after
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        pos = c * BLOCK_L + offs_l
        mask_l = pos < L
        offs = row[:, None] + pos[None, :]
        mask = (offs_d < dim)[:, None] & mask_l[None, :]
        mask_next = (offs_d < dim)[:, None] & (pos + 1 < L)[None, :]
        u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dt, raw = _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS, SOFTPLUS)
        dt_next, _ = _load_dt(delta_ptr, offs + 1, mask_next, bias, HAS_BIAS, SOFTPLUS)
        bc_offs = bc_row[:, None] + pos[None, :]
        bc_mask = mask_n[:, None] & mask_l[None, :]
        Bv = tl.load(B_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)

        # recompute the states of this chunk from its stored start
        h0 = tl.load(hstart_ptr + hs_row + c * N, mask=mask_n[None, :], other=0.0)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])
        bu = (dt * u)[:, None, :] * Bv[None, :, :]
        bx = tl.where(first, bu + a * h0[:, :, None], bu)
        _, hs = tl.associative_scan((a, bx), axis=2, combine_fn=_linear_combine)

        dy = dout
        if HAS_Z:
            z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            y = tl.sum(hs * Cv[None, :, :], axis=1)
            if HAS_D:
                y += u * Dv[:, None]
            tl.store(dz_ptr + offs, dout * y * sz * (1.0 + z * (1.0 - sz)), mask=mask)
            dy = dout * z * sz
        du = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if HAS_D:
            du = dy * Dv[:, None]
            dD_acc += tl.sum(dy * u, axis=1)

        # g_l = dy_l C_l + exp(dt_{l+1} A) g_{l+1}, scanned from the end of the chunk
        a_next = tl.exp2(dt_next[:, None, :] * A2[:, :, None])
        beta = dy[:, None, :] * Cv[None, :, :]
        beta = tl.where(last, beta + a_next * g_next[:, :, None], beta)
        _, g = tl.associative_scan((a_next, beta), axis=2, combine_fn=_linear_combine, reverse=True)
        g_next = tl.sum(tl.where(first, g, 0.0), axis=2)

        gdt = g * dt[:, None, :]
        ah = hs - bu  # exp(dt_l A) h_{l-1}
        du += tl.sum(gdt * Bv[None, :, :], axis=1)
        ddt = tl.sum(g * (Bv[None, :, :] * u[:, None, :] + A[:, :, None] * ah), axis=1)
        dA_acc += tl.sum(gdt * ah, axis=2)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(mask, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + offs, du, mask=mask)
        tl.store(ddelta_ptr + offs, ddt, mask=mask)
        tl.atomic_add(dB_ptr + bc_offs, tl.sum(gdt * u[:, None, :], axis=0), mask=bc_mask)
        tl.atomic_add(dC_ptr + bc_offs, tl.sum(hs * dy[:, None, :], axis=0), mask=bc_mask)

    tl.atomic_add(dA_ptr + dn_offs, dA_acc, mask=mask_n[None, :])
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc)


def _block_d(block_d: int, dim_per_group: int) -> int:
    """The largest power of two <= block_d dividing dim_per_group, so a block never spans two groups."""
    while dim_per_group % block_d:
        block_d //= 2
    return block_d


def _check(u: Tensor) -> None:
    if not u.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton selective scan needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _launch_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, config):
    batch, dim, L = u.shape
    groups, N = B.shape[1], A.shape[1]
    block_l, block_d, warps = config[:3]
    block_d = _block_d(block_d, dim // groups)
    n_chunks = triton.cdiv(L, block_l)
    out = torch.empty(batch, dim, L, device=u.device, dtype=torch.float32)
    hstart = torch.empty(batch, dim, n_chunks, N, device=u.device, dtype=torch.float32)
    _scan_fwd_kernel[(dim // block_d, batch)](
        u, delta, A, B, C, D, z, delta_bias, out, hstart,
        dim, L, N, groups, dim // groups, n_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=block_l, num_warps=warps,
    )
    return out, hstart


def _launch_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, hstart, dout, config):
    batch, dim, L = u.shape
    groups, N = B.shape[1], A.shape[1]
    block_l, block_d, warps = config[0], config[3], config[4]
    block_d = _block_d(block_d, dim // groups)
    n_chunks = triton.cdiv(L, block_l)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros(dim, N, device=u.device, dtype=torch.float32)
    dB = torch.zeros(B.shape, device=u.device, dtype=torch.float32)
    dC = torch.zeros(C.shape, device=u.device, dtype=torch.float32)
    dD = torch.zeros(dim, device=u.device, dtype=torch.float32) if D is not None else None
    dbias = torch.zeros(dim, device=u.device, dtype=torch.float32) if delta_bias is not None else None
    _scan_bwd_kernel[(dim // block_d, batch)](
        u, delta, A, B, C, D, z, delta_bias, hstart, dout,
        du, ddelta, dA, dB, dC, dD, dz, dbias,
        dim, L, N, groups, dim // groups, n_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), BLOCK_L=block_l, num_warps=warps,
    )
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def _contig(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.contiguous()


class SelectiveScanTriton(torch.autograd.Function):
    """Autograd wrapper; `config` is laid out as CONFIG (benchmarks pass others to tune)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, config):
        u, delta, A, B, C, D, z, delta_bias = map(_contig, (u, delta, A, B, C, D, z, delta_bias))
        out, hstart = _launch_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, config)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, hstart)
        ctx.delta_softplus = delta_softplus
        ctx.config = config
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, hstart = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dz, dbias = _launch_bwd(
            u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, hstart, dout.contiguous(), ctx.config
        )
        cast = lambda g, ref: None if g is None else g.to(ref.dtype)  # noqa: E731
        return (du, ddelta, cast(dA, A), cast(dB, B), cast(dC, C), cast(dD, D), dz, cast(dbias, delta_bias),
                None, None)


def selective_scan_triton(
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
    """Selective scan with the semantics of `selective_scan_reference`, as Triton kernels; returns (b, d, L) float32."""
    _check(u)
    return SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, CONFIG)
