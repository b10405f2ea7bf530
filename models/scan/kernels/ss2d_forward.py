"""SS2D's forward kernel: one program per batch element, direction, block of channels and sequence segment.

The program steps through its tokens one at a time. It loads B and C as (channels, N) tiles whose rows repeat
one token's N values: from those loads Triton lays the state out as one channel and 8 contiguous states per
lane, each lane reading its 8 B (or C) values in one 16-byte load. Where the sequence is split into segments
(too few programs otherwise), a first launch (LOCAL) computes each segment's end state from a zero start and
its summed dt; a segment's decay is exp(A * sum dt), so the second launch composes every segment's true start.
"""

from __future__ import annotations

import triton
import triton.language as tl

from models.scan.kernels.common import softplus
from models.scan.kernels.ss2d_grid import (
    bc_tile_offsets,
    bias_and_D,
    load_bc,
    program_block,
    rates_log2,
    segment_chunks,
    valid_at,
    walk,
    walk_next,
)


@triton.jit
def ss2d_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, hstart_ptr, hend_ptr, sdt_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    LOCAL: tl.constexpr, STORE_STATES: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    CHUNK: tl.constexpr,
):  # fmt: skip
    """One segment (program axis 2) of a direction's scan. With LOCAL (pass 1 of a split sequence): the state it
    ends with from a zero start, and its summed dt. Otherwise its outputs, from the start state composed of the
    earlier segments' pass-1 results, storing every chunk-start state with STORE_STATES (for the backward).
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2)
    L = H * W
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A2 = rates_log2(A_ptr, channel[:, None] * N + offs_n[None, :], mask_dn)
    bias, Dv = bias_and_D(bias_ptr, D_ptr, channel, mask_d)

    u_row = u_ptr + b * L * dim + offs_d  # u (b, L, dim)
    dk_row = (b * L * 4 + k) * dim + offs_d  # delta and out (b, L, 4, dim)
    bc_tile = bc_tile_offsets(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k)
    state_offs = offs_d[:, None] * N + offs_n[None, :]  # one (dim, N) state
    hs_offs = (b * 4 + k) * n_chunks * dim * N + state_offs  # (b, 4, n_chunks, dim, N)
    seg_row = (b * 4 + k) * n_segments  # segment summaries: end states (b, 4, S, dim, N), summed dt (b, 4, S, dim)
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if not LOCAL:
        for r in range(seg):
            sdt = tl.load(sdt_ptr + (seg_row + r) * dim + offs_d, mask=mask_d, other=0.0)
            h_end = tl.load(hend_ptr + (seg_row + r) * N * dim + state_offs, mask=mask_dn, other=0.0)
            h = tl.exp2(sdt[:, None] * A2) * h + h_end
    sdt_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0, chunks = segment_chunks(seg, seg_chunks, n_chunks)
    p, inner, jump, run, rem = walk(c0 * CHUNK, k, H, W, L)
    for c in range(c0, c0 + chunks):
        if STORE_STATES:
            tl.store(hstart_ptr + hs_offs + c * dim * N, h, mask=mask_dn)
        for j in tl.static_range(CHUNK):
            valid, valid_n = valid_at(c * CHUNK + j, L, mask_d, mask_n)
            # every load of the step before any arithmetic, B and C first: instructions issue in order, and where
            # ptxas placed the B/C loads after the softplus they were issued only once delta's load had returned
            Bv = load_bc(B_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            if not LOCAL:
                Cv = load_bc(C_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            u = tl.load(u_row + p * dim, mask=valid, other=0.0).to(tl.float32)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32)
            dt = tl.where(valid, softplus(raw + bias), 0.0)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv
            if LOCAL:
                sdt_acc += dt
            else:
                y = tl.sum(h * Cv, axis=1) + u * Dv
                tl.store(out_ptr + dk_row + p * 4 * dim, y, mask=valid)
            p, rem = walk_next(p, rem, inner, jump, run)
    if LOCAL:
        tl.store(hend_ptr + (seg_row + seg) * N * dim + state_offs, h, mask=mask_dn)
        tl.store(sdt_ptr + (seg_row + seg) * dim + offs_d, sdt_acc, mask=mask_d)
