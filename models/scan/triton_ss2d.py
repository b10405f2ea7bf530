"""SS2D's four directional scans as fused Triton kernels that read and write the token grid in place: their
configuration, launch planning and autograd Function (the kernels are in kernels/ss2d_*.py).

The plain path, `models.ss2d.ss2d_scan_plain` (this op's reference and test oracle), copies the grid into four
scan orders (rows, columns, both reversed), casts to float32, scans, and copies back. Here every tensor stays
in its channels-last (batch, H*W, ...) layout and dtype, and only the four directions' outputs are summed.
One program owns one batch element, one direction and a block of channels. When that is too few programs to
fill the GPU (small batches, long sequences), each direction's sequence is split into segments scanned side by
side in two passes; the backward is the sequential kernel, or the chunk-parallel one where even a split
leaves too few programs (`plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import triton
from torch import Tensor

from models.scan.kernels.common import require_device
from models.scan.kernels.ss2d_backward import (
    ss2d_bwd_carry_kernel,
    ss2d_bwd_parallel_kernel,
    ss2d_bwd_sequential_kernel,
)
from models.scan.kernels.ss2d_forward import ss2d_fwd_kernel

DIRECTIONS = 4


@dataclass(frozen=True, kw_only=True)
class Config:
    """Block shapes of the kernels and when each backward runs; benchmarks/gpu_ss2d.py sweeps them."""

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


# Measured on an H100 at the paper configs' SS2D shapes: the block shapes are the best of block/warp sweeps;
# states every 8 steps rather than 4 cost 6% of a train step's time and save a third of its peak memory; the
# sequential backward ran 1.4-1.5x as fast as the chunk-parallel one from 1,024 programs and 0.47x at 256; a
# split adds a pass, so it pays only where the GPU would idle.
CONFIG = Config(
    block_d=16,
    seq_chunk=8,
    seq_block_d=16,
    par_chunk=16,
    par_block_d=8,
    par_warps=2,
    seq_min_programs=768,
    split_programs=2048,
    min_segment=128,
)


class Plan(NamedTuple):
    """How one scan is laid out: which backward runs, the steps between stored states, and the sequence split."""

    sequential: bool  # the sequential backward (else the chunk-parallel one)
    chunk: int
    n_chunks: int
    segments: int
    seg_chunks: int  # chunks per segment (the last segment may have fewer)


def _block_d(block_d: int, dim: int) -> int:
    """block_d, but no larger than dim needs (a block of masked lanes alone would be wasted)."""
    return min(block_d, triton.next_power_of_2(dim))


def sequential_programs(batch: int, dim: int, config: Config) -> int:
    """Programs of the sequential backward over an unsplit sequence: one per batch element, direction, channel block."""
    return batch * DIRECTIONS * triton.cdiv(dim, _block_d(config.seq_block_d, dim))


def plan(batch: int, length: int, dim: int, config: Config) -> Plan:
    """With fewer than config.seq_min_programs sequential programs, split the sequence in two until they reach
    config.split_programs or a segment would be shorter than config.min_segment steps; the sequential backward
    runs if seq_min_programs were reached."""
    programs = sequential_programs(batch, dim, config)
    segments = 1
    while (
        programs < config.seq_min_programs
        and programs * segments < config.split_programs
        and length >= 2 * segments * config.min_segment
    ):
        segments *= 2
    if programs * segments < config.seq_min_programs:
        n_chunks = triton.cdiv(length, config.par_chunk)
        return Plan(sequential=False, chunk=config.par_chunk, n_chunks=n_chunks, segments=1, seg_chunks=n_chunks)
    n_chunks = triton.cdiv(length, config.seq_chunk)
    seg_chunks = triton.cdiv(n_chunks, segments)
    return Plan(sequential=True, chunk=config.seq_chunk, n_chunks=n_chunks,
                segments=triton.cdiv(n_chunks, seg_chunks), seg_chunks=seg_chunks)  # fmt: skip


def force_layout(config: Config, backward: str, batch: int, dim: int) -> Config:
    """config made to run one backward wherever it can: "sequential" (unsplit), "parallel", or "segmented" (the
    sequential one over four segments, on sequences of at least four steps); for tests and benchmarks."""
    if backward == "segmented":
        programs = 4 * sequential_programs(batch, dim, config)
        return replace(config, seq_min_programs=programs, split_programs=programs, min_segment=1)
    return replace(config, seq_min_programs={"sequential": 0, "parallel": 10**9}[backward], min_segment=10**9)


def _bc_strides(t: Tensor) -> tuple[int, int, int]:
    """(batch, position, direction) strides of a (b, H, W, 4, N) tensor whose N axis is contiguous."""
    return t.stride(0), t.stride(2), t.stride(3)


def _segment_summaries(batch: int, layout: Plan, dim: int, N: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Buffers for each segment's pass-1 state (b, 4, S, dim * N) and summed dt (b, 4, S, dim)."""
    shape = (batch, DIRECTIONS, layout.segments)
    return (torch.empty(*shape, dim * N, device=device, dtype=torch.float32),
            torch.empty(*shape, dim, device=device, dtype=torch.float32))  # fmt: skip


def launch_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor,
                   store_states: bool, config: Config) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The forward on `_kernel_inputs`: each direction's output (b, H, W, 4, d) float32, and the chunk-start
    states where `store_states` (a placeholder otherwise)."""
    batch, height, width, dim = u.shape
    N = A.shape[1]
    block_d = _block_d(config.block_d, dim)
    layout = plan(batch, height * width, dim, config)
    out = torch.empty(batch, height, width, DIRECTIONS, dim, device=u.device, dtype=torch.float32)
    hstart = torch.empty(batch, DIRECTIONS, layout.n_chunks if store_states else 1, dim, N, device=u.device,
                         dtype=torch.float32)  # fmt: skip
    hend, sdt = _segment_summaries(batch, layout, dim, N, u.device)
    grid = (triton.cdiv(dim, block_d), batch * DIRECTIONS)
    for local, segments in ((True, layout.segments - 1), (False, layout.segments)):
        if segments:
            ss2d_fwd_kernel[(*grid, segments)](
                u, delta, A, B, C, D, delta_bias, out, hstart, hend, sdt,
                dim, height, width, N, layout.n_chunks, layout.seg_chunks, layout.segments, *_bc_strides(B),
                LOCAL=local, STORE_STATES=store_states and not local, BLOCK_D=block_d,
                BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
            )  # fmt: skip
    return out, hstart


def launch_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor,
                    hstart: Tensor, dout: Tensor, config: Config) -> tuple[Tensor, ...]:  # fmt: skip
    """The backward on `_kernel_inputs` and dout (b, H, W, d) float32: gradients of u, delta, A, B, C, D and
    delta_bias, B's and C's contiguous."""
    batch, height, width, dim = u.shape
    N = A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(batch, height, width, DIRECTIONS, dim, **f32)
    ddelta = torch.empty_like(delta)
    assert _bc_strides(B) == _bc_strides(C)
    layout = plan(batch, height * width, dim, config)
    sizes, strides = (dim, height, width, N, layout.n_chunks), _bc_strides(B)
    if layout.sequential:
        carry, sdt = _segment_summaries(batch, layout, dim, N, u.device)
        split = (layout.seg_chunks, layout.segments)
        if layout.segments > 1:
            block_d = _block_d(config.block_d, dim)
            ss2d_bwd_carry_kernel[(triton.cdiv(dim, block_d), batch * DIRECTIONS, layout.segments - 1)](
                delta, A, C, delta_bias, dout, carry, sdt, *sizes, *split, *strides,
                BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
            )  # fmt: skip
        block_d = _block_d(config.seq_block_d, dim)
        blocks = triton.cdiv(dim, block_d)
        dA, dD, dbias = (torch.empty(batch * layout.segments, *t.shape, **f32) for t in (A, D, delta_bias))
        dB, dC = (torch.empty(blocks, batch, height, width, DIRECTIONS, N, **f32) for _ in range(2))
        ss2d_bwd_sequential_kernel[(blocks, batch * DIRECTIONS, layout.segments)](
            u, delta, A, B, C, D, delta_bias, hstart, dout, carry, sdt, du, ddelta, dA, dB, dC, dD, dbias,
            *sizes, *split, *strides,
            BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), CHUNK=layout.chunk, num_warps=1,
        )  # fmt: skip
        dA, dB, dC, dD, dbias = dA.sum(0), dB.sum(0), dC.sum(0), dD.sum(0), dbias.sum(0)
    else:
        block_d = _block_d(config.par_block_d, dim)
        dA, dD, dbias = (torch.zeros(t.shape, **f32) for t in (A, D, delta_bias))
        dB, dC = (torch.zeros(batch, height, width, DIRECTIONS, N, **f32) for _ in range(2))
        ss2d_bwd_parallel_kernel[(triton.cdiv(dim, block_d), batch * DIRECTIONS)](
            u, delta, A, B, C, D, delta_bias, hstart, dout, du, ddelta, dA, dB, dC, dD, dbias,
            *sizes, *strides,
            BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(N), BLOCK_L=config.par_chunk, num_warps=config.par_warps,
        )  # fmt: skip
    return du.sum(3).to(u.dtype), ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


def _vector_ready(t: Tensor) -> bool:
    """Whether Triton can load t's N values 16 bytes at a time: N contiguous, every other stride a multiple of 16
    (the divisibility Triton specialises on) and the data 16-byte aligned."""
    return t.stride(-1) == 1 and all(s % 16 == 0 for s in _bc_strides(t)) and t.data_ptr() % 16 == 0


def _kernel_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   delta_bias: Tensor) -> tuple[Tensor, ...]:  # fmt: skip
    """The inputs in the layouts the kernels read: u and delta contiguous, B and C sharing strides that allow
    vector loads (views into one tensor whose strides allow it stay views; SS2D's are copied unless its dt rank
    is a multiple of 16), the parameters float32."""
    u, delta = u.contiguous(), delta.contiguous()
    if not (_vector_ready(B) and _vector_ready(C) and _bc_strides(B) == _bc_strides(C)):
        B, C = B.contiguous(), C.contiguous()
    return u, delta, A.float().contiguous(), B, C, D.float().contiguous(), delta_bias.float().contiguous()


class SS2DScanTriton(torch.autograd.Function):
    """Autograd of the fused kernels: apply(u, delta, A, B, C, D, delta_bias, config)."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        """The four directions' outputs summed, (b, H, W, d) float32; chunk-start states kept if gradients are."""
        *tensors, config = args
        inputs = _kernel_inputs(*tensors)
        store_states = any(ctx.needs_input_grad)  # inference needs no chunk-start states
        out, hstart = launch_forward(*inputs, store_states, config)
        ctx.save_for_backward(*inputs, hstart)
        ctx.config = config
        return out.sum(3)

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        """Every input's gradient (none for the config)."""
        *inputs, hstart = ctx.saved_tensors
        return (*launch_backward(*inputs, hstart, dout.float().contiguous(), ctx.config), None)


def ss2d_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                     delta_bias: Tensor) -> Tensor:  # fmt: skip
    """The four directional scans of SS2D, summed on the grid; the semantics of `models.ss2d.ss2d_scan_plain`.

    u (b, H, W, d); delta (b, H, W, 4, d) before bias and softplus; A (4d, N); B, C (b, H, W, 4, N);
    D, delta_bias (4d). Inputs may be bfloat16 (the state is float32); returns (b, H, W, d) float32.
    """
    require_device(u)
    return SS2DScanTriton.apply(u, delta, A, B, C, D, delta_bias, CONFIG)


def ss2d_directions_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                           delta_bias: Tensor) -> Tensor:  # fmt: skip
    """Inference: the four directions' outputs on the grid, (b, H, W, 4, d) float32, not yet summed (for
    models.triton_norm_gate, which sums them as it reads them); arguments as `ss2d_scan_triton`'s."""
    require_device(u)
    out, _ = launch_forward(*_kernel_inputs(u, delta, A, B, C, D, delta_bias), False, CONFIG)
    return out
