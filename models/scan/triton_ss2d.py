"""SS2D's four directional selective scans as Triton kernels that read and write the token grid in place.

The plain path (models/ss2d.py) copies the grid into four scan orders (rows, columns, both reversed),
casts to float32, scans, and copies back. Here one program owns one batch element, one direction and a
block of channels, and walks the grid in its direction by index arithmetic: every tensor stays in its
channels-last (batch, H*W, ...) layout and dtype, and only the four directions' outputs are summed.
The forward steps through the tokens one at a time and stores the state at every chunk start. It loads
B and C as (channels, N) tiles whose rows repeat one token's N values: from those loads Triton lays the state
out as one channel and 8 contiguous states per lane, each lane reading its 8 B (or C) values in one 16-byte
load (B and C are copied where their strides do not allow that).
Two backward kernels recompute a chunk from its stored start and carry dL/dh back through it: the
sequential one steps like the forward, keeping the chunk's states in registers (fast when there are
enough programs to fill the GPU); the chunk-parallel one scans a chunk with `tl.associative_scan` as
triton_scan.py does (where even a split sequence leaves too few programs for the sequential one).
When one program per (batch, direction, channel block) is too few to fill the GPU (small batches, long
sequences), each direction's sequence is split into segments scanned side by side, in two passes: the
state a segment ends with from a zero start, and its summed dt (the segment's decay is exp(A * sum dt)),
compose into every segment's true start state; the backward carries dL/dh across segments the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from models.scan.triton_scan import _check, _linear_combine, _softplus

LOG2E = tl.constexpr(1.4426950408889634)
DIRECTIONS = 4


class Config(NamedTuple):
    """Block shapes of the kernels and the choice of backward; benchmarks/gpu_ss2d.py sweeps them."""

    block_d: int  # channels per forward program (one warp)
    seq_chunk: int  # steps between stored states when the sequential backward runs (its states sit in registers)
    seq_block_d: int  # channels per sequential-backward program (one warp)
    par_chunk: int  # steps between stored states when the chunk-parallel backward runs
    par_block_d: int  # channels per chunk-parallel-backward program
    par_warps: int
    seq_min_programs: int  # with fewer sequential programs than this the GPU idles: the sequence is split, ...
    split_programs: int  # ... into as many segments as bring the programs to this (a split costs a second pass),
    min_segment: int  # of at least this many steps; where that stops short of seq_min_programs, the
    # chunk-parallel backward runs on the unsplit sequence


CONFIG = Config(16, 8, 16, 16, 8, 2, 768, 2048, 128)  # H100 measurements: benchmarks/gpu/NOTES.md, sessions 3, 5


@triton.jit
def _position(step, direction, H, W, L):
    """Grid index (row * W + col) of the step-th token of a direction: rows, columns, rows reversed, columns reversed."""
    t = tl.where(direction >= 2, L - 1 - step, step)
    return tl.where(direction % 2 == 1, (t % H) * W + t // H, t)


@triton.jit
def _valid_at(step, L, mask_d, mask_n):
    """The channel and state masks of a step, off past the last token."""
    return (mask_d & (tl.full(mask_d.shape, step, tl.int32) < L),
            mask_n & (tl.full(mask_n.shape, step, tl.int32) < L))


@triton.jit
def _step_at(step, k, H, W, L, mask_d, mask_n):
    """Grid index of direction k's step-th token, and the channel and state masks, off past the last token."""
    valid_d, valid_n = _valid_at(step, L, mask_d, mask_n)
    return _position(step, k, H, W, L), valid_d, valid_n


@triton.jit
def _walk(step, k, H, W, L):
    """Direction k's walk over the grid from its step-th token, so that later tokens need no division: that
    token's grid index; the index increment between tokens of one run (a row, or a column: all of L for the row
    directions); the increment from a run's last token to the next run's first; the run length; and the tokens
    left in the current run after this one."""
    cols = k % 2 == 1
    sign = tl.where(k >= 2, -1, 1)
    run = tl.where(cols, H, L)
    return (_position(step, k, H, W, L), tl.where(cols, W, 1) * sign, (1 - (H - 1) * W) * sign, run,
            run - 1 - step % run)


@triton.jit
def _walk_next(p, rem, inner, jump, run):
    """The grid index of the walk's next token, and the steps left in its run."""
    wrap = rem == 0
    return p + tl.where(wrap, jump, inner), tl.where(wrap, run - 1, rem - 1)


@triton.jit
def _program_block(dim, N, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's batch element b and direction k, its channel and state offsets with their masks, and its
    channels' indices among the 4 * dim direction-major parameters (A's rows, D, delta_bias)."""
    b = tl.program_id(1) // 4
    k = tl.program_id(1) % 4
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    return b, k, offs_d, offs_n, offs_d < dim, offs_n < N, k * dim + offs_d


@triton.jit
def _bias_and_D(bias_ptr, D_ptr, channel, mask_d):
    """delta_bias and D of the program's channels, float32."""
    bias = tl.load(bias_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    return bias, Dv


@triton.jit
def _rates_log2(A_ptr, dn_offs, mask_dn):
    """A * log2(e) of the program's (channels, states)."""
    return tl.load(A_ptr + dn_offs, mask=mask_dn, other=0.0) * LOG2E


@triton.jit
def _bc_tile(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k):
    """Offsets of B's or C's (b, L, 4, N) values for batch b and direction k at the first token, as a (channels,
    states) tile whose every row holds the same N offsets."""
    return b * bc_stride_b + k * bc_stride_k + offs_n[None, :] + 0 * offs_d[:, None]


@triton.jit
def _load_bc(ptr, bc_tile, p, bc_stride_l, valid, valid_n):
    """B or C of the token at p as a (channels, states) tile, each row the same N values: a tile whose N axis is
    contiguous is what makes Triton give each lane 8 contiguous states, loaded 16 bytes at a time."""
    mask = valid[:, None] & valid_n[None, :]
    return tl.load(ptr + bc_tile + p * bc_stride_l, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _segment_chunks(seg, seg_chunks, n_chunks):
    """The first chunk of segment `seg` and its number of chunks (the last segment may be shorter)."""
    c0 = seg * seg_chunks
    return c0, tl.minimum(n_chunks - c0, seg_chunks)


@triton.jit
def _ss2d_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, hstart_ptr, hend_ptr, sdt_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    LOCAL: tl.constexpr, STORE_STATES: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """One segment (program axis 2) of a direction's scan. With LOCAL (pass 1 of a split sequence): the state it
    ends with from a zero start, and its summed dt. Otherwise its outputs, from the start state composed of the
    earlier segments' pass-1 results, storing every chunk-start state with STORE_STATES (for the backward).
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = _program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2)
    L = H * W
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A2 = _rates_log2(A_ptr, channel[:, None] * N + offs_n[None, :], mask_dn)
    bias, Dv = _bias_and_D(bias_ptr, D_ptr, channel, mask_d)

    u_row = u_ptr + b * L * dim + offs_d  # u (b, L, dim)
    dk_row = (b * L * 4 + k) * dim + offs_d  # delta and out (b, L, 4, dim)
    bc_tile = _bc_tile(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k)
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
    c0, chunks = _segment_chunks(seg, seg_chunks, n_chunks)
    p, inner, jump, run, rem = _walk(c0 * CHUNK, k, H, W, L)
    for c in range(c0, c0 + chunks):
        if STORE_STATES:
            tl.store(hstart_ptr + hs_offs + c * dim * N, h, mask=mask_dn)
        for j in tl.static_range(CHUNK):
            valid, valid_n = _valid_at(c * CHUNK + j, L, mask_d, mask_n)
            # every load of the step before any arithmetic, B and C first: instructions issue in order, and where
            # ptxas placed the B/C loads after the softplus they were issued only once delta's load had returned
            Bv = _load_bc(B_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            if not LOCAL:
                Cv = _load_bc(C_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            u = tl.load(u_row + p * dim, mask=valid, other=0.0).to(tl.float32)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32)
            dt = tl.where(valid, _softplus(raw + bias), 0.0)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv
            if LOCAL:
                sdt_acc += dt
            else:
                y = tl.sum(h * Cv, axis=1) + u * Dv
                tl.store(out_ptr + dk_row + p * 4 * dim, y, mask=valid)
            p, rem = _walk_next(p, rem, inner, jump, run)
    if LOCAL:
        tl.store(hend_ptr + (seg_row + seg) * N * dim + state_offs, h, mask=mask_dn)
        tl.store(sdt_ptr + (seg_row + seg) * dim + offs_d, sdt_acc, mask=mask_d)


@triton.jit
def _ss2d_bwd_carry_kernel(
    delta_ptr, A_ptr, C_ptr, bias_ptr, dout_ptr, carry_ptr, sdt_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    """Pass 1 of a split backward, for segment 1 + program axis 2: dL/dh carried back through the segment from
    zero at its end (exp(dt A) dL/dh at its first step), and its summed dt; stored (b, 4, S, dim, N), (b, 4, S, dim).
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = _program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2) + 1  # nothing is carried into the first segment's start
    L = H * W
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A2 = _rates_log2(A_ptr, channel[:, None] * N + offs_n[None, :], mask_dn)
    bias = tl.load(bias_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    dy_row = dout_ptr + b * L * dim + offs_d
    dk_row = (b * L * 4 + k) * dim + offs_d
    bc_tile = _bc_tile(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k)
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    sdt_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0, chunks = _segment_chunks(seg, seg_chunks, n_chunks)
    for cc in range(chunks):
        c = c0 + chunks - 1 - cc
        for j in tl.static_range(CHUNK - 1, -1, -1):
            p, valid, valid_n = _step_at(c * CHUNK + j, k, H, W, L, mask_d, mask_n)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32) + bias
            Cv = _load_bc(C_ptr, bc_tile, p, bc_stride_l, valid, valid_n)
            dy = tl.load(dy_row + p * dim, mask=valid, other=0.0)
            dt = tl.where(valid, _softplus(raw), 0.0)
            carry = tl.exp2(dt[:, None] * A2) * (dy[:, None] * Cv + carry)
            sdt_acc += dt
    seg_row = (b * 4 + k) * n_segments
    tl.store(carry_ptr + (seg_row + seg) * dim * N + offs_d[:, None] * N + offs_n[None, :], carry, mask=mask_dn)
    tl.store(sdt_ptr + (seg_row + seg) * dim + offs_d, sdt_acc, mask=mask_d)


@triton.jit
def _ss2d_bwd_sequential_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hstart_ptr, dout_ptr, carry_ptr, sdt_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, H, W, N, n_chunks, seg_chunks, n_segments, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    """One segment (program axis 2): per chunk, last first, recompute its states step by step into a register
    tuple, then walk back; dL/dh enters the segment's end composed of the later segments' pass-1 carries.

    dB and dC are summed over this program's channels and written per channel block (the caller sums
    the blocks); dA, dD and dbias are written per batch element and segment. No atomics.
    """
    b, k, offs_d, offs_n, mask_d, mask_n, channel = _program_block(dim, N, BLOCK_D, BLOCK_N)
    seg = tl.program_id(2)
    batch = tl.num_programs(1) // 4
    L = H * W
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn_offs = channel[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn_offs, mask=mask_dn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    bias, Dv = _bias_and_D(bias_ptr, D_ptr, channel, mask_d)

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
        seg_carry = tl.load(carry_ptr + (seg_row + r) * dim * N + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn,
                            other=0.0)
        carry = tl.exp2(sdt[:, None] * A2) * carry + seg_carry
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0, chunks = _segment_chunks(seg, seg_chunks, n_chunks)
    for cc in range(chunks):
        c = c0 + chunks - 1 - cc
        h = tl.load(hstart_ptr + hs_offs + c * dim * N, mask=mask_dn, other=0.0)
        hs = ()
        us = ()
        raws = ()
        for j in tl.static_range(CHUNK):
            step = c * CHUNK + j
            p, valid, valid_n = _step_at(step, k, H, W, L, mask_d, mask_n)
            u = tl.load(u_row + p * dim, mask=valid, other=0.0).to(tl.float32)
            raw = tl.load(delta_ptr + dk_row + p * 4 * dim, mask=valid, other=0.0).to(tl.float32) + bias
            dt = tl.where(valid, _softplus(raw), 0.0)
            Bv = tl.load(B_ptr + bc_row + p * bc_stride_l, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bv[None, :]
            hs = hs + (h,)
            us = us + (u,)
            raws = raws + (raw,)
        for j in tl.static_range(CHUNK - 1, -1, -1):
            step = c * CHUNK + j
            p, valid, valid_n = _step_at(step, k, H, W, L, mask_d, mask_n)
            u = us[j]
            raw = raws[j]
            dt = tl.where(valid, _softplus(raw), 0.0)
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
def _ss2d_bwd_parallel_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hstart_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, H, W, N, n_chunks, bc_stride_b, bc_stride_l, bc_stride_k,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    b, k, offs_d, offs_n, mask_d, mask_n, channel = _program_block(dim, N, BLOCK_D, BLOCK_N)
    L = H * W
    offs_l = tl.arange(0, BLOCK_L)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn_offs = channel[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn_offs, mask=mask_dn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    bias, Dv = _bias_and_D(bias_ptr, D_ptr, channel, mask_d)

    hs_offs = ((b * 4 + k) * n_chunks * dim + offs_d)[:, None] * N + offs_n[None, :]  # (b, 4, n_chunks, dim, N)
    first = (offs_l == 0)[None, None, :]
    last = (offs_l == BLOCK_L - 1)[None, None, :]
    g_next = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # dL/dh at the first step of the chunk after
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        step = c * BLOCK_L + offs_l
        mask_l = step < L
        mask_next = step + 1 < L
        p = _position(step, k, H, W, L)
        p_next = _position(step + 1, k, H, W, L)
        mask = mask_d[:, None] & mask_l[None, :]
        u_offs = (b * L + p)[None, :] * dim + offs_d[:, None]  # (d, l) into (b, L, dim)
        dk_offs = ((b * L + p) * 4 + k)[None, :] * dim + offs_d[:, None]  # into (b, L, 4, dim)
        dk_next = ((b * L + p_next) * 4 + k)[None, :] * dim + offs_d[:, None]
        bc_offs = b * bc_stride_b + k * bc_stride_k + p[None, :] * bc_stride_l + offs_n[:, None]  # (n, l)
        bc_mask = mask_n[:, None] & mask_l[None, :]

        u = tl.load(u_ptr + u_offs, mask=mask, other=0.0).to(tl.float32)
        raw = tl.load(delta_ptr + dk_offs, mask=mask, other=0.0).to(tl.float32) + bias[:, None]
        dt = tl.where(mask, _softplus(raw), 0.0)
        raw_next = tl.load(delta_ptr + dk_next, mask=mask_d[:, None] & mask_next[None, :], other=0.0)
        dt_next = _softplus(raw_next.to(tl.float32) + bias[:, None])
        dt_next = tl.where(mask_d[:, None] & mask_next[None, :], dt_next, 0.0)
        Bv = tl.load(B_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=bc_mask, other=0.0).to(tl.float32)
        dy = tl.load(dout_ptr + u_offs, mask=mask, other=0.0).to(tl.float32)

        # recompute the states of this chunk from its stored start
        h0 = tl.load(hstart_ptr + hs_offs + c * dim * N, mask=mask_dn, other=0.0)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])
        bu = (dt * u)[:, None, :] * Bv[None, :, :]
        bx = tl.where(first, bu + a * h0[:, :, None], bu)
        _, hs = tl.associative_scan((a, bx), axis=2, combine_fn=_linear_combine)

        # g_l = dy_l C_l + exp(dt_{l+1} A) g_{l+1}, scanned from the end of the chunk
        a_next = tl.exp2(dt_next[:, None, :] * A2[:, :, None])
        beta = dy[:, None, :] * Cv[None, :, :]
        beta = tl.where(last, beta + a_next * g_next[:, :, None], beta)
        _, g = tl.associative_scan((a_next, beta), axis=2, combine_fn=_linear_combine, reverse=True)
        g_next = tl.sum(tl.where(first, g, 0.0), axis=2)

        gdt = g * dt[:, None, :]
        ah = hs - bu  # exp(dt_l A) h_{l-1}
        du = dy * Dv[:, None] + tl.sum(gdt * Bv[None, :, :], axis=1)
        ddt = tl.sum(g * (Bv[None, :, :] * u[:, None, :] + A[:, :, None] * ah), axis=1) * tl.sigmoid(raw)
        ddt = tl.where(mask, ddt, 0.0)
        dA_acc += tl.sum(gdt * ah, axis=2)
        dD_acc += tl.sum(dy * u, axis=1)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + dk_offs, du, mask=mask)
        tl.store(ddelta_ptr + dk_offs, ddt, mask=mask)
        dbc_offs = ((b * L + p) * 4 + k)[None, :] * N + offs_n[:, None]  # into contiguous (b, L, 4, N)
        tl.atomic_add(dB_ptr + dbc_offs, tl.sum(gdt * u[:, None, :], axis=0), mask=bc_mask)
        tl.atomic_add(dC_ptr + dbc_offs, tl.sum(hs * dy[:, None, :], axis=0), mask=bc_mask)

    tl.atomic_add(dA_ptr + dn_offs, dA_acc, mask=mask_dn)
    tl.atomic_add(dD_ptr + channel, dD_acc, mask=mask_d)
    tl.atomic_add(dbias_ptr + channel, dbias_acc, mask=mask_d)


def _block_d(block_d: int, dim: int) -> int:
    """block_d, but no larger than dim needs (a block of masked lanes alone would be wasted)."""
    return min(block_d, triton.next_power_of_2(dim))


def _bc_strides(t: Tensor) -> tuple[int, int, int]:
    """(batch, position, direction) strides of a (b, H, W, 4, N) tensor whose N axis is contiguous."""
    return t.stride(0), t.stride(2), t.stride(3)


class Plan(NamedTuple):
    """How one scan is laid out: which backward runs, the steps between stored states, and the sequence split."""

    sequential: bool  # the sequential backward (else the chunk-parallel one)
    chunk: int
    n_chunks: int
    segments: int
    seg_chunks: int  # chunks per segment (the last segment may have fewer)


def sequential_programs(batch: int, dim: int, config: Config) -> int:
    """Programs of the sequential backward over an unsplit sequence: one per batch element, direction, channel block."""
    return batch * DIRECTIONS * triton.cdiv(dim, _block_d(config.seq_block_d, dim))


def plan(batch: int, length: int, dim: int, config: Config) -> Plan:
    """With fewer than config.seq_min_programs sequential programs, split the sequence in two until they reach
    config.split_programs or a segment would be shorter than config.min_segment steps; the sequential backward
    runs if seq_min_programs were reached."""
    programs = sequential_programs(batch, dim, config)
    segments = 1
    while (programs < config.seq_min_programs and programs * segments < config.split_programs
           and length >= 2 * segments * config.min_segment):
        segments *= 2
    if programs * segments < config.seq_min_programs:
        n_chunks = triton.cdiv(length, config.par_chunk)
        return Plan(False, config.par_chunk, n_chunks, 1, n_chunks)
    n_chunks = triton.cdiv(length, config.seq_chunk)
    seg_chunks = triton.cdiv(n_chunks, segments)
    return Plan(True, config.seq_chunk, n_chunks, triton.cdiv(n_chunks, seg_chunks), seg_chunks)


def force_layout(config: Config, backward: str, batch: int, dim: int) -> Config:
    """config made to run one backward wherever it can: "sequential" (unsplit), "parallel", or "segmented" (the
    sequential one over four segments, on sequences of at least four steps); for tests and benchmarks."""
    if backward == "segmented":
        programs = 4 * sequential_programs(batch, dim, config)
        return config._replace(seq_min_programs=programs, split_programs=programs, min_segment=1)
    return config._replace(seq_min_programs={"sequential": 0, "parallel": 10**9}[backward], min_segment=10**9)


def _segment_summaries(batch: int, layout: Plan, dim: int, N: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Buffers for each segment's pass-1 state (b, 4, S, dim * N) and summed dt (b, 4, S, dim)."""
    shape = (batch, DIRECTIONS, layout.segments)
    return (torch.empty(*shape, dim * N, device=device, dtype=torch.float32),
            torch.empty(*shape, dim, device=device, dtype=torch.float32))


def _launch_fwd(u, delta, A, B, C, D, bias, store_states, config):
    batch, height, width, dim = u.shape
    N = A.shape[1]
    block_d = _block_d(config.block_d, dim)
    layout = plan(batch, height * width, dim, config)
    out = torch.empty(batch, height, width, DIRECTIONS, dim, device=u.device, dtype=torch.float32)
    hstart = torch.empty(batch, DIRECTIONS, layout.n_chunks if store_states else 1, dim, N, device=u.device,
                         dtype=torch.float32)
    hend, sdt = _segment_summaries(batch, layout, dim, N, u.device)
    grid = (triton.cdiv(dim, block_d), batch * DIRECTIONS)
    for local, segments in ((True, layout.segments - 1), (False, layout.segments)):
        if segments:
            _ss2d_fwd_kernel[(*grid, segments)](
                u, delta, A, B, C, D, bias, out, hstart, hend, sdt,
                dim, height, width, N, layout.n_chunks, layout.seg_chunks, layout.segments, *_bc_strides(B),
                LOCAL=local, STORE_STATES=store_states and not local, BLOCK_D=block_d,
                BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
            )
    return out, hstart


def _launch_bwd(u, delta, A, B, C, D, bias, hstart, dout, config):
    batch, height, width, dim = u.shape
    N = A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(batch, height, width, DIRECTIONS, dim, **f32)
    ddelta = torch.empty_like(delta)
    assert _bc_strides(B) == _bc_strides(C)
    layout = plan(batch, height * width, dim, config)
    if layout.sequential:
        carry, sdt = _segment_summaries(batch, layout, dim, N, u.device)
        if layout.segments > 1:
            block_d = _block_d(config.block_d, dim)
            _ss2d_bwd_carry_kernel[(triton.cdiv(dim, block_d), batch * DIRECTIONS, layout.segments - 1)](
                delta, A, C, bias, dout, carry, sdt,
                dim, height, width, N, layout.n_chunks, layout.seg_chunks, layout.segments, *_bc_strides(B),
                BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
            )
        block_d = _block_d(config.seq_block_d, dim)
        blocks = triton.cdiv(dim, block_d)
        dA, dD, dbias = (torch.empty(batch * layout.segments, *t.shape, **f32) for t in (A, D, bias))
        dB, dC = (torch.empty(blocks, batch, height, width, DIRECTIONS, N, **f32) for _ in range(2))
        _ss2d_bwd_sequential_kernel[(blocks, batch * DIRECTIONS, layout.segments)](
            u, delta, A, B, C, D, bias, hstart, dout, carry, sdt, du, ddelta, dA, dB, dC, dD, dbias,
            dim, height, width, N, layout.n_chunks, layout.seg_chunks, layout.segments, *_bc_strides(B),
            BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
        )
        dA, dB, dC, dD, dbias = dA.sum(0), dB.sum(0), dC.sum(0), dD.sum(0), dbias.sum(0)
    else:
        block_d = _block_d(config.par_block_d, dim)
        dA, dD, dbias = torch.zeros(A.shape, **f32), torch.zeros(D.shape, **f32), torch.zeros(bias.shape, **f32)
        dB, dC = (torch.zeros(batch, height, width, DIRECTIONS, N, **f32) for _ in range(2))
        _ss2d_bwd_parallel_kernel[(triton.cdiv(dim, block_d), batch * DIRECTIONS)](
            u, delta, A, B, C, D, bias, hstart, dout, du, ddelta, dA, dB, dC, dD, dbias,
            dim, height, width, N, layout.n_chunks, *_bc_strides(B),
            BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), BLOCK_L=config.par_chunk, num_warps=config.par_warps,
        )
    return du.sum(3).to(u.dtype), ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


def _vector_ready(t: Tensor) -> bool:
    """Whether Triton can load t's N values 16 bytes at a time: N contiguous, every other stride a multiple of 16
    (the divisibility Triton specialises on) and the data 16-byte aligned."""
    return t.stride(-1) == 1 and all(s % 16 == 0 for s in _bc_strides(t)) and t.data_ptr() % 16 == 0


def _kernel_inputs(u, delta, A, B, C, D, delta_bias):
    """The inputs in the layouts the kernels read: u and delta contiguous, B and C sharing strides that allow
    vector loads (views into one tensor whose strides allow it stay views; SS2D's are copied unless its dt rank
    is a multiple of 16), the parameters float32."""
    u, delta = u.contiguous(), delta.contiguous()
    if not (_vector_ready(B) and _vector_ready(C) and _bc_strides(B) == _bc_strides(C)):
        B, C = B.contiguous(), C.contiguous()
    return u, delta, A.float().contiguous(), B, C, D.float().contiguous(), delta_bias.float().contiguous()


class SS2DScanTriton(torch.autograd.Function):
    """Autograd wrapper of the fused kernels; `config` is a Config (benchmarks pass others)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, config):
        u, delta, A, B, C, D, delta_bias = _kernel_inputs(u, delta, A, B, C, D, delta_bias)
        store_states = any(ctx.needs_input_grad)  # inference needs no chunk-start states
        out, hstart = _launch_fwd(u, delta, A, B, C, D, delta_bias, store_states, config)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, hstart)
        ctx.config = config
        return out.sum(3)

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, delta_bias, hstart = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = _launch_bwd(u, delta, A, B, C, D, delta_bias, hstart,
                                                        dout.float().contiguous(), ctx.config)
        return du, ddelta, dA, dB, dC, dD, dbias, None


def ss2d_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                     delta_bias: Tensor) -> Tensor:
    """The four directional scans of SS2D, summed on the grid; the semantics of `models.ss2d.ss2d_scan_plain`.

    u (b, H, W, d); delta (b, H, W, 4, d) before bias and softplus; A (4d, N); B, C (b, H, W, 4, N);
    D, delta_bias (4d). Inputs may be bfloat16 (the state is float32); returns (b, H, W, d) float32.
    """
    _check(u)
    return SS2DScanTriton.apply(u, delta, A, B, C, D, delta_bias, CONFIG)


def ss2d_directions_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                           delta_bias: Tensor) -> Tensor:
    """Inference: the four directions' outputs on the grid, (b, H, W, 4, d) float32, not yet summed (for
    models.triton_norm_gate, which sums them as it reads them); arguments as `ss2d_scan_triton`'s."""
    _check(u)
    out, _ = _launch_fwd(*_kernel_inputs(u, delta, A, B, C, D, delta_bias), False, CONFIG)
    return out
