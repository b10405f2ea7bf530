"""Benchmark-only: build mamba_ssm's CUDA selective scan from its sources and call it like selective_scan_fn.

The GPU machine has no network and no mamba_ssm package, so its csrc/selective_scan sources are copied
into .mamba/ (git-ignored) and compiled for sm_90 with torch.utils.cpp_extension.load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import Tensor

NVCC_FLAGS = [
    "-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda",
    "-gencode", "arch=compute_90,code=sm_90",
]


def build(source_dir: str | Path, build_dir: str | Path, jobs: int = 16) -> types.ModuleType:
    """Compile (or load an earlier build of) the extension `selective_scan_cuda` for sm_90."""
    from torch.utils.cpp_extension import load

    os.environ.setdefault("MAX_JOBS", str(jobs))
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    src = Path(source_dir)
    Path(build_dir).mkdir(parents=True, exist_ok=True)
    return load(
        name="selective_scan_cuda",
        sources=[str(p) for p in sorted(src.glob("*.cpp")) + sorted(src.glob("*.cu"))],
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=NVCC_FLAGS,
        build_directory=str(build_dir),
        verbose=False,
    )


def start_build(source_dir: str | Path, build_dir: str | Path) -> subprocess.Popen | None:
    """Compile in a background process (2 minutes of nvcc) while the caller times other things."""
    if not Path(source_dir).is_dir():
        return None
    code = f"import mamba_kernel; mamba_kernel.build({str(source_dir)!r}, {str(build_dir)!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_build(process: subprocess.Popen | None, source_dir: str | Path, build_dir: str | Path):
    """The built extension once the background build is done, or None (with its log printed) if it failed."""
    if process is None:
        return None
    log, _ = process.communicate()
    if process.returncode != 0:
        print("mamba build FAILED:\n" + log[-4000:], flush=True)
        return None
    return build(source_dir, build_dir)


class _MambaScan(torch.autograd.Function):
    """mamba's fwd/bwd as selective_scan_fn calls them (no last state, no recomputed out_z)."""

    @staticmethod
    def forward(ctx, ext, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        args = [None if t is None else t.contiguous() for t in (u, delta, A, B, C, D, z, delta_bias)]
        out, x, *rest = ext.fwd(*args, delta_softplus)
        ctx.ext, ctx.delta_softplus = ext, delta_softplus
        ctx.has = (D is not None, z is not None, delta_bias is not None)
        ctx.save_for_backward(*args, x, out)
        return rest[0] if z is not None else out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias, *rest = ctx.ext.bwd(
            u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), x, out, None, ctx.delta_softplus, False
        )
        has_d, has_z, has_bias = ctx.has
        return (None, du, ddelta, dA, dB, dC, dD if has_d else None, rest[0] if has_z else None,
                dbias if has_bias else None, None)


def make_scan_fn(ext: types.ModuleType):
    """A function with selective_scan_fn's signature running the built extension."""

    def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                          z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                          return_last_state: bool = False) -> Tensor:
        if return_last_state:
            raise NotImplementedError("return_last_state is not wrapped")
        return _MambaScan.apply(ext, u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    return selective_scan_fn


def install_as_mamba_ssm(ext: types.ModuleType) -> None:
    """Register a stand-in `mamba_ssm.ops.selective_scan_interface` so models' "mamba" backend uses the build."""
    names = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface")
    modules = [types.ModuleType(n) for n in names]
    modules[2].selective_scan_fn = make_scan_fn(ext)
    modules[0].ops, modules[1].selective_scan_interface = modules[1], modules[2]
    sys.modules.update(zip(names, modules))
