"""How an SS2D kernel program finds its work: its batch element, direction and channels, and its tokens' places.

SS2D scans the (H, W) token grid in four directions: rows, columns, rows reversed, columns reversed. Its
tensors stay in the model's channels-last layout: u and the output (b, H*W, dim), delta (b, H*W, 4, dim),
B and C (b, H*W, 4, N) with any strides where N is contiguous. A program walks its direction by index
arithmetic; the parameters A (4*dim, N), D and delta_bias (4*dim) are direction-major.
"""

from __future__ import annotations

import triton
import triton.language as tl

from models.scan.kernels.common import LOG2E


@triton.jit
def position(step, direction, H, W, L):
    """Grid index (row * W + col) of a direction's step-th token: rows, columns, rows reversed, columns reversed."""
    t = tl.where(direction >= 2, L - 1 - step, step)
    return tl.where(direction % 2 == 1, (t % H) * W + t // H, t)


@triton.jit
def valid_at(step, L, mask_d, mask_n):
    """The channel and state masks of a step, off past the last token."""
    return (mask_d & (tl.full(mask_d.shape, step, tl.int32) < L), mask_n & (tl.full(mask_n.shape, step, tl.int32) < L))


@triton.jit
def step_at(step, k, H, W, L, mask_d, mask_n):
    """Grid index of direction k's step-th token, and the channel and state masks, off past the last token."""
    valid_d, valid_n = valid_at(step, L, mask_d, mask_n)
    return position(step, k, H, W, L), valid_d, valid_n


@triton.jit
def walk(step, k, H, W, L):
    """Direction k's walk over the grid from its step-th token, so that later tokens need no division: that
    token's grid index; the index increment between tokens of one run (a row, or a column: all of L for the row
    directions); the increment from a run's last token to the next run's first; the run length; and the tokens
    left in the current run after this one."""
    cols = k % 2 == 1
    sign = tl.where(k >= 2, -1, 1)
    run = tl.where(cols, H, L)
    return (
        position(step, k, H, W, L),
        tl.where(cols, W, 1) * sign,
        (1 - (H - 1) * W) * sign,
        run,
        run - 1 - step % run,
    )


@triton.jit
def walk_next(p, rem, inner, jump, run):
    """The grid index of the walk's next token, and the steps left in its run."""
    wrap = rem == 0
    return p + tl.where(wrap, jump, inner), tl.where(wrap, run - 1, rem - 1)


@triton.jit
def program_block(dim, N, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's batch element b and direction k, its channel and state offsets with their masks, and its
    channels' indices among the 4 * dim direction-major parameters (A's rows, D, delta_bias)."""
    b = tl.program_id(1) // 4
    k = tl.program_id(1) % 4
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    return b, k, offs_d, offs_n, offs_d < dim, offs_n < N, k * dim + offs_d


@triton.jit
def bias_and_D(bias_ptr, D_ptr, channel, mask_d):
    """delta_bias and D of the program's channels, float32."""
    bias = tl.load(bias_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + channel, mask=mask_d, other=0.0).to(tl.float32)
    return bias, Dv


@triton.jit
def rates_log2(A_ptr, dn_offs, mask_dn):
    """A * log2(e) of the program's (channels, states)."""
    return tl.load(A_ptr + dn_offs, mask=mask_dn, other=0.0) * LOG2E


@triton.jit
def backward_params(A_ptr, bias_ptr, D_ptr, channel, offs_n, N, mask_d, mask_n):
    """The backward's (channels, states) mask and offsets into A, A itself and A * log2(e), delta_bias and D."""
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn_offs = channel[:, None] * N + offs_n[None, :]
    A = tl.load(A_ptr + dn_offs, mask=mask_dn, other=0.0).to(tl.float32)
    bias, Dv = bias_and_D(bias_ptr, D_ptr, channel, mask_d)
    return mask_dn, dn_offs, A, A * LOG2E, bias, Dv


@triton.jit
def bc_tile_offsets(b, k, offs_d, offs_n, bc_stride_b, bc_stride_k):
    """Offsets of B's or C's (b, L, 4, N) values for batch b and direction k at the first token, as a (channels,
    states) tile whose every row holds the same N offsets."""
    return b * bc_stride_b + k * bc_stride_k + offs_n[None, :] + 0 * offs_d[:, None]


@triton.jit
def load_bc(ptr, bc_tile, p, bc_stride_l, valid, valid_n):
    """B or C of the token at p as a (channels, states) tile, each row the same N values: a tile whose N axis is
    contiguous is what makes Triton give each lane 8 contiguous states, loaded 16 bytes at a time."""
    mask = valid[:, None] & valid_n[None, :]
    return tl.load(ptr + bc_tile + p * bc_stride_l, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def segment_chunks(seg, seg_chunks, n_chunks):
    """The first chunk of segment `seg` and its number of chunks (the last segment may be shorter)."""
    c0 = seg * seg_chunks
    return c0, tl.minimum(n_chunks - c0, seg_chunks)
