"""SS2D's backward kernels: dL/dh carried back through each direction's scan, from the stored chunk-start states.

Two backwards recompute a chunk from its stored start and carry dL/dh back through it. The sequential one steps
like the forward, keeping the chunk's states in registers (fast when there are enough programs to fill the
GPU); the chunk-parallel one scans a chunk with `tl.associative_scan` (`chunk_backward`, shared with the 1-D
scan) where even a split sequence leaves too few programs for the sequential one. Over a split sequence, a
first pass (the carry kernel) computes what each segment passes back to the one before.
"""

from __future__ import annotations

import triton
import triton.language as tl

from models.scan.kernels.common import chunk_backward, chunk_backward_start, softplus
from models.scan.kernels.ss2d_grid import (
    backward_params,
    bc_tile_offsets,
    load_bc,
    position,
    program_block,
    rates_log2,
    segment_chunks,
    step_at,
)


@triton.jit
def ss2d_bwd_carry_kernel(
    delta_ptr, A_ptr, C_ptr, bias_ptr, dout_ptr, carry_ptr, sdt_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Pass 1 of a split backward, for segment 1 + program axis 2: dL/dh carried back through the segment from
    zero at its end (exp(dt A) dL/dh at its first step), and its summed dt; stored (b, 4, S, dim, N), (b, 4, S, dim).
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2) + 1  # nothing is carried into the first segment's start
    L = H * W
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A2 = rates_log2(A_ptr, channel[:, None] * N + offs_n[None, :], mask_dn)
    bias = tl.load(bias_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    dy_row = dout_ptr + b * L * dim + offs_d
    dk_row = (b * L * 4 + k) * dim + offs_d
    bc_tile = bc_tile_offsets(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k)
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    sdt_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0, chunks = segment_chunks(seg, seg_chunks, n_chunks)
    for cc in range(chunks):
        c = c0 + chunks - 1 - cc
        for j in tl.static_range(CHUNK - 1, -1, -1):
            p, valid, valid_n = step_at(c * CHUNK + j, k, H, W, L, mask_d, mask_n)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32) + bias
            Cv = load_bc(C_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            dy = tl.load(dy_row + p * dim, mask=valid, other=0.0)
            dt = tl.where(valid, softplus(raw), 0.0)
            carry = tl.exp2(dt[:, None] * A2) * (dy[:, None] * Cv + carry)
            sdt_acc += dt
    seg_row = (b * 4 + k) * n_segments
    tl.store(carry_ptr + (seg_row + seg) * dim * N + offs_d[:, None] * N + offs_n[None, :], carry, mask=mask_dn)
    tl.store(sdt_ptr + (seg_row + seg) * dim + offs_d, sdt_acc, mask=mask_d)


@triton.jit
def ss2d_bwd_sequential_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hstart_ptr, dout_ptr, carry_ptr, sdt_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """One segment (program axis 2): per chunk, last first, recompute its states step by step into a register
    tuple, then walk back; dL/dh enters the segment's end composed of the later segments' pass-1 carries.

    dB and dC are summed over this program's channels and written per channel block (the caller sums
    the blocks); dA, dD and dbias are written per batch element and segment. No atomics.
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2)
    batch = tl.num_programs(1) // 4
    L = H * W
    mask_dn, dn_offs, A, A2, bias, Dv = backward_params(A_ptr, bias_ptr, D_ptr, channel, offs_n, N, mask_d, mask_n)

    hs_offs = ((b * 4 + k) * n_chunks * dim + offs_d)[:, None] * N + offs_n[None, :]  # (b, 4, n_chunks, dim, N)
    u_row = u_ptr + b * L * dim + offs_d
    dy_row = dout_ptr + b * L * dim + offs_d
    dk_row = (b * L * 4 + k) * dim + offs_d
    bc_row = b * bc_stride_b + k * bc_stride_k + offs_n
    part_row = ((tl.program_id(0) * batch + b) * L * 4 + k) * N + offs_n  # dB, dC (channel blocks, b, L, 4, N)
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # exp(dt A) dL/dh of the step after
    seg_row = (b * 4 + k) * n_segments
    for rr in range(n_segments - 1 - seg):
        r = n_segments - 1 - rr
        sdt = tl.load(sdt_ptr + (seg_row + r) * dim + offs_d, mask=mask_d, other=0.0)
        seg_carry = tl.load(
            carry_ptr + (seg_row + r) * dim * N + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0
        )
        carry = tl.exp2(sdt[:, None] * A2) * carry + seg_carry
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0, chunks = segment_chunks(seg, seg_chunks, n_chunks)
    for cc in range(chunks):
        c = c0 + chunks - 1 - cc
        h = tl.load(hstart_ptr + hs_offs + c * dim * N, mask=mask_dn, other=0.0)
        hs = ()
        us = ()
        raws = ()
        for j in tl.static_range(CHUNK):
            step = c * CHUNK + j
            p, valid, valid_n = step_at(step, k, H, W, L, mask_d, mask_n)
            u = tl.load(u_row + p * dim, mask=valid, other=0.0).to(tl.float32)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32) + bias
            dt = tl.where(valid, softplus(raw), 0.0)
            Bv = tl.load(B_ptr + bc_row + p * bc_stride_l, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv[None, :]
            hs = hs + (h,)
            us = us + (u,)
            raws = raws + (raw,)
        for j in tl.static_range(CHUNK - 1, -1, -1):
            step = c * CHUNK + j
            p, valid, valid_n = step_at(step, k, H, W, L, mask_d, mask_n)
            u = us[j]
            raw = raws[j]
            dt = tl.where(valid, softplus(raw), 0.0)
            Bv = tl.load(B_ptr + bc_row + p * bc_stride_l, mask=valid_n, other=0.0).to(tl.float32)
            Cv = tl.load(C_ptr + bc_row + p * bc_stride_l, mask=valid_n, other=0.0).to(tl.float32)
            dy = tl.load(dy_row + p * dim, mask=valid, other=0.0)
            dtu = dt * u
            G = dy[:, None] * Cv[None, :] + carry  # dL/dh at this step
            h = hs[j]
            ah = h - dtu[:, None] * Bv[None, :]  # exp(dt A) times the state before
            gB = tl.sum(G * Bv[None, :], axis=1)
            du = dy * Dv + dt * gB
            ddt = tl.where(valid, (u * gB + tl.sum(G * A * ah, axis=1)) * tl.sigmoid(raw), 0.0)
            dA_acc += G * ah * dt[:, None]
            dD_acc += dy * u
            dbias_acc += ddt
            tl.store(du_ptr + dk_row + p * 4 * dim, du, mask=valid)
            tl.store(ddelta_ptr + dk_row + p * 4 * dim, ddt, mask=valid)
            tl.store(dB_ptr + part_row + p * 4 * N, tl.sum(G * dtu[:, None], axis=0), mask=valid_n)
            tl.store(dC_ptr + part_row + p * 4 * N, tl.sum(h * dy[:, None], axis=0), mask=valid_n)
            carry = tl.exp2(dt[:, None] * A2) * G

    row = b * n_segments + seg
    tl.store(dA_ptr + row * 4 * dim * N + dn_offs, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + row * 4 * dim + channel, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + row * 4 * dim + channel, dbias_acc, mask=mask_d)


@triton.jit
def ss2d_bwd_parallel_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hstart_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, H, W, N, n_chunks, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """The unsplit sequence, chunk by chunk from the last, each by `chunk_backward`; dA, dB, dC, dD and dbias
    summed by atomic adds (dB and dC into contiguous (b, L, 4, N) buffers)."""
    b, k, offs_d, offs_n, mask_d, mask_n, channel = program_block(dim, N, BLOCK_D, BLOCK_N)
    L = H * W
    offs_l = tl.arange(0, BLOCK_L)
    mask_dn, dn_offs, A, A2, bias, Dv = backward_params(A_ptr, bias_ptr, D_ptr, channel, offs_n, N, mask_d, mask_n)

    hs_offs = ((b * 4 + k) * n_chunks * dim + offs_d)[:, None] * N + offs_n[None, :]  # (b, 4, n_chunks, dim, N)
    first, last, g_next, dA_acc, dD_acc, dbias_acc = chunk_backward_start(BLOCK_D, BLOCK_N, BLOCK_L)
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        step = c * BLOCK_L + offs_l
        mask_l = step < L
        mask_next = step + 1 < L
        p = position(step, k, H, W, L)
        p_next = position(step + 1, k, H, W, L)
        mask = mask_d[:, None] & mask_l[None, :]
        u_offs = (b * L + p)[None, :] * dim + offs_d[:, None]  # (d, l) into (b, L, dim)
        dk_offs = ((b * L + p) * 4 + k)[None, :] * dim + offs_d[:, None]  # into (b, L, 4, dim)
        dk_next = ((b * L + p_next) * 4 + k)[None, :] * dim + offs_d[:, None]
        bc_offs = b * bc_stride_b + k * bc_stride_k + p[None, :] * bc_stride_l + offs_n[:, None]  # (n, l)
        bc_mask = mask_n[:, None] & mask_l[None, :]

        u = tl.load(u_ptr + u_offs, mask=mask, other=0.0).to(tl.float32)
        raw = tl.load(delta_ptr + dk_offs, mask=mask, other=0.0).to(tl.float32) + bias[:, None]
        dt = tl.where(mask, softplus(raw), 0.0)
        raw_next = tl.load(delta_ptr + dk_next, mask=mask_d[:, None] & mask_next[None, :], other=0.0)
        dt_next = softplus(raw_next.to(tl.float32) + bias[:, None])
        dt_next = tl.where(mask_d[:, None] & mask_next[None, :], dt_next, 0.0)
        Bv = tl.load(B_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        dy = tl.load(dout_ptr + u_offs, mask=mask, other=0.0).to(tl.float32)
        h0 = tl.load(hstart_ptr + hs_offs + c * dim * N, mask=mask_dn, other=0.0)

        _, g_next, du_state, ddt, dA, dB, dC = chunk_backward(
            u, dt, dt_next, Bv, Cv, dy, A, A2, h0, g_next, first, last
        )
        du = dy * Dv[:, None] + du_state
        ddt = tl.where(mask, ddt * tl.sigmoid(raw), 0.0)
        dA_acc += dA
        dD_acc += tl.sum(dy * u, axis=1)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + dk_offs, du, mask=mask)
        tl.store(ddelta_ptr + dk_offs, ddt, mask=mask)
        dbc_offs = ((b * L + p) * 4 + k)[None, :] * N + offs_n[:, None]  # into contiguous (b, L, 4, N)
        tl.atomic_add(dB_ptr + dbc_offs, dB, mask=bc_mask)
        tl.atomic_add(dC_ptr + dbc_offs, dC, mask=bc_mask)

    tl.atomic_add(dA_ptr + dn_offs, dA_acc, mask=mask_dn)
    tl.atomic_add(dD_ptr + channel, dD_acc, mask=mask_d)
    tl.atomic_add(dbias_ptr + channel, dbias_acc, mask=mask_d)
