"""The 1-D selective scan's Triton kernels: one pass over the inputs forward, one reverse pass backward.

Each program owns one batch element and a block of channels, all of one group (B and C are per group). The
forward steps through the sequence one token at a time, keeping the (channels, N) state in registers (a step
is one exp and two multiply-adds per state), and stores the state at every chunk start. The backward walks
the chunks in reverse, each by `chunk_backward` (kernels/common.py) from the stored start state.
"""

from __future__ import annotations

import triton
import triton.language as tl

from models.scan.kernels.common import LOG2E, chunk_backward, chunk_backward_start, softplus


@triton.jit
def _program(
    A_ptr,
    D_ptr,
    bias_ptr,
    dim,
    L,
    N,
    groups,
    dim_per_group,
    n_chunks,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """This program's channels, its state mask, its offsets into A, u's rows, B's rows and the stored chunk-start
    states, and its channels' A, D and delta_bias in float32 (D and delta_bias zero when absent)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    group = (pid_d * BLOCK_D) // dim_per_group
    dn_offs = offs_d[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn_offs, mask=mask_n[None, :], other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d).to(tl.float32)
    row = (pid_b * dim + offs_d) * L  # u, delta, z, out (b, dim, L)
    bc_row = ((pid_b * groups + group) * N + offs_n) * L  # B, C (b, groups, N, L)
    hs_row = ((pid_b * dim + offs_d) * n_chunks)[:, None] * N + offs_n[None, :]  # chunk starts (b, dim, chunks, N)
    return offs_d, mask_n, dn_offs, A, bias, Dv, row, bc_row, hs_row


@triton.jit
def _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Effective step size dt (0 where masked, so masked steps keep the state) and its pre-softplus value; bias
    is shaped to add to the loaded tile."""
    raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = softplus(raw)
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _in_seq(mask, pos, L):
    """mask & (pos < L), broadcast to mask's shape (a scalar comparison is a plain bool in the interpreter)."""
    return mask & (tl.full(mask.shape, pos, tl.int32) < L)


@triton.jit
def scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, hstart_ptr,
    dim, L, N, groups, dim_per_group, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """y = the scan's output (times SiLU(z) with z), step by step; the state at every CHUNK-th step stored."""
    offs_d, mask_n, _dn_offs, A, bias, Dv, row, bc_row, hs_row = _program(
        A_ptr, D_ptr, bias_ptr, dim, L, N, groups, dim_per_group, n_chunks, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_N
    )
    mask_d = offs_d < dim
    A2 = A * LOG2E
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for c in range(n_chunks):
        tl.store(hstart_ptr + hs_row + c * N, h, mask=mask_n[None, :])
        for j in tl.static_range(CHUNK):
            pos = c * CHUNK + j
            valid = _in_seq(mask_d, pos, L)
            valid_n = _in_seq(mask_n, pos, L)
            u = tl.load(u_ptr + row + pos, mask=valid, other=0.0).to(tl.float32)
            dt, _ = _load_dt(delta_ptr, row + pos, valid, bias, HAS_BIAS, SOFTPLUS)
            Bv = tl.load(B_ptr + bc_row + pos, mask=valid_n, other=0.0).to(tl.float32)
            Cv = tl.load(C_ptr + bc_row + pos, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv[None, :]
            y = tl.sum(h * Cv[None, :], axis=1)
            if HAS_D:
                y += u * Dv
            if HAS_Z:
                z = tl.load(z_ptr + row + pos, mask=valid, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + row + pos, y, mask=valid)


@triton.jit
def scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, hstart_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
    dim, L, N, groups, dim_per_group, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Every input's gradient, chunk by chunk from the last; dA, dB, dC, dD and dbias summed by atomic adds."""
    offs_d, mask_n, dn_offs, A, bias, Dv, row, bc_row, hs_row = _program(
        A_ptr, D_ptr, bias_ptr, dim, L, N, groups, dim_per_group, n_chunks, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_N
    )
    A2 = A * LOG2E
    offs_l = tl.arange(0, BLOCK_L)
    first, last, g_next, dA_acc, dD_acc, dbias_acc = chunk_backward_start(BLOCK_D, BLOCK_N, BLOCK_L)
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        pos = c * BLOCK_L + offs_l
        mask_l = pos < L
        offs = row[:, None] + pos[None, :]
        mask = (offs_d < dim)[:, None] & mask_l[None, :]
        mask_next = (offs_d < dim)[:, None] & (pos + 1 < L)[None, :]
        u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dt, raw = _load_dt(delta_ptr, offs, mask, bias[:, None], HAS_BIAS, SOFTPLUS)
        dt_next, _ = _load_dt(delta_ptr, offs + 1, mask_next, bias[:, None], HAS_BIAS, SOFTPLUS)
        bc_offs = bc_row[:, None] + pos[None, :]
        bc_mask = mask_n[:, None] & mask_l[None, :]
        Bv = tl.load(B_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        h0 = tl.load(hstart_ptr + hs_row + c * N, mask=mask_n[None, :], other=0.0)

        dy = dout
        if HAS_Z:
            z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            dy = dout * z * sz
        hs, g_next, du_state, ddt, dA, dB, dC = chunk_backward(
            u, dt, dt_next, Bv, Cv, dy, A, A2, h0, g_next, first, last
        )
        if HAS_Z:
            y = tl.sum(hs * Cv[None, :, :], axis=1)
            if HAS_D:
                y += u * Dv[:, None]
            tl.store(dz_ptr + offs, dout * y * sz * (1.0 + z * (1.0 - sz)), mask=mask)
        du = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if HAS_D:
            du = dy * Dv[:, None]
            dD_acc += tl.sum(dy * u, axis=1)
        du += du_state
        dA_acc += dA
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(mask, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + offs, du, mask=mask)
        tl.store(ddelta_ptr + offs, ddt, mask=mask)
        tl.atomic_add(dB_ptr + bc_offs, dB, mask=bc_mask)
        tl.atomic_add(dC_ptr + bc_offs, dC, mask=bc_mask)

    tl.atomic_add(dA_ptr + dn_offs, dA_acc, mask=mask_n[None, :])
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc)
