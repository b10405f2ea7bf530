"""What both Triton ops share: softplus, the linear-recurrence combine, and the chunk-parallel backward's maths.

The chunk-parallel backward (the 1-D scan's only backward, and SS2D's where too few programs would fill the
GPU for its sequential one) works on one chunk of steps at a time, as (channels, states, steps) tiles: it
recomputes the chunk's states from the state stored at its start with `tl.associative_scan`, then scans
dL/dh back through the chunk the same way. Each kernel loads and stores in its own layout; the maths is here.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl
from torch import Tensor
from triton.language.extra import libdevice

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")


def require_device(u: Tensor) -> None:
    """Refuse CPU tensors unless the kernels run under Triton's interpreter (TRITON_INTERPRET=1)."""
    if not u.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton selective scan needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


@triton.jit
def linear_combine(a1, b1, a2, b2):
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
def softplus(x):
    """log(1 + e^x), computed without overflow for large |x|."""
    return tl.maximum(x, 0.0) + LN2 * _log2(1.0 + tl.exp2(-tl.abs(x) * LOG2E))


@triton.jit
def chunk_backward_start(BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """The masks of a chunk's first and last step, and zeros to start dL/dh (at the first step of the chunk after
    the last) and the sums of dA, dD and delta_bias's gradient from."""
    offs_l = tl.arange(0, BLOCK_L)
    first = (offs_l == 0)[None, None, :]
    last = (offs_l == BLOCK_L - 1)[None, None, :]
    g_next = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    return first, last, g_next, dA_acc, dD_acc, dbias_acc


@triton.jit
def chunk_backward(u, dt, dt_next, Bv, Cv, dy, A, A2, h0, g_next, first, last):
    """One chunk of the backward, on (channels, steps) tiles u, dt, dt_next (the next step's dt), dy and
    (states, steps) tiles B, C; A and A2 = A log2(e) are (channels, states), h0 the state at the chunk's start,
    g_next dL/dh at the next chunk's first step; first and last mark the chunk's first and last step.

    Returns the chunk's states hs (channels, states, steps); dL/dh at its first step (the g_next of the chunk
    before); the state's part of du (the D u term's is the caller's); d/d(dt) (before softplus's derivative);
    and this chunk's terms of dA (channels, states), dB and dC (states, steps).
    """
    # recompute the states of this chunk from its stored start
    a = tl.exp2(dt[:, None, :] * A2[:, :, None])
    bu = (dt * u)[:, None, :] * Bv[None, :, :]
    bx = tl.where(first, bu + a * h0[:, :, None], bu)
    _, hs = tl.associative_scan((a, bx), axis=2, combine_fn=linear_combine)

    # g_l = dy_l C_l + exp(dt_{l+1} A) g_{l+1}, scanned from the end of the chunk
    a_next = tl.exp2(dt_next[:, None, :] * A2[:, :, None])
    beta = dy[:, None, :] * Cv[None, :, :]
    beta = tl.where(last, beta + a_next * g_next[:, :, None], beta)
    _, g = tl.associative_scan((a_next, beta), axis=2, combine_fn=linear_combine, reverse=True)
    g_first = tl.sum(tl.where(first, g, 0.0), axis=2)

    gdt = g * dt[:, None, :]
    ah = hs - bu  # exp(dt_l A) h_{l-1}
    du = tl.sum(gdt * Bv[None, :, :], axis=1)
    ddt = tl.sum(g * (Bv[None, :, :] * u[:, None, :] + A[:, :, None] * ah), axis=1)
    dA = tl.sum(gdt * ah, axis=2)
    dB = tl.sum(gdt * u[:, None, :], axis=0)
    dC = tl.sum(hs * dy[:, None, :], axis=0)
    return hs, g_first, du, ddt, dA, dB, dC
