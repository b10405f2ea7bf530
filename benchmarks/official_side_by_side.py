"""GPU: the official VMRNN code and ours, trained side by side in one process on one card, at the paper's configs.

For each config (Moving MNIST VMRNN-D batch 16, 64x64x1, 10 -> 10; TaxiBJ VMRNN-B batch 16, 32x32x2, 4 -> 4; KTH
VMRNN-B batch 4, 128x128x1, 10 -> 20) one training step = forward over the whole sequence + MSE + backward + the
optimiser, on random frames in [0, 1]; each time is the median of --steps timed steps (default 20) after 3 warm-up
steps, timed by CUDA events; peak = torch.cuda.max_memory_allocated from the model's construction on.

- **ours**: `vmrnn train`'s default step on CUDA, built as benchmarks/gpu_train.py's `graphs` variant: the Triton
  scan, bf16 autocast, forward and backward captured as CUDA graphs by `step_modes.graphed_forward`, AdamW.
- **official**: yyyujintang/VMRNN-PyTorch's openstl models (`VMRNN_D_Model`, `VMRNN_B_Model`), their files run
  unchanged, with the hyperparameters of their `configs/<data>/VMRNN-*.py` (drop path 0.1 in train mode included),
  the step of their `train_one_epoch` (Adam at lr 1e-4, no clipping), in float32 and under bf16 autocast. Their
  scan is mamba_ssm's `selective_scan_fn` (state-spaces/mamba's own `selective_scan_interface.py`) on its CUDA kernel
  `selective_scan_cuda`, built here from mamba's `csrc/selective_scan` for this card by
  torch.utils.cpp_extension.load (mamba's nvcc flags, one -gencode for the card). The official code calls the scan
  with float32 inputs and real weights only, so only those kernels are compiled (selective_scan_fwd_fp32.cu,
  selective_scan_bwd_fp32_real.cu, unchanged); the other dtypes raise if called (--mamba-all-dtypes builds them all).
  The build runs in a background process while our steps are compiled and warmed up.
- Their optional imports are stood in for without touching their files, by modules put in sys.modules before the
  import: `fvcore` (flop counting only), `timm` where it is not installed (PatchEmbed, DropPath, to_2tuple and
  trunc_normal_, as timm writes them), `mamba_ssm.ops.triton.layer_norm` (not used by the selective scan) and
  `einops` from its wheel in <official>/wheels where it is not installed; `ninja` (for the build) likewise.

The official sources are never committed: --official names a folder (default .official, git-ignored) holding

    VMRNN-PyTorch/{LICENSE, openstl/models/VMRNN_model.py, openstl/modules/{VMRNN_modules,vmamba}.py,
                   configs/{mmnist/VMRNN-D,taxibj/VMRNN-B,kth/VMRNN-B}.py}
    mamba/{LICENSE, csrc/selective_scan/*, mamba_ssm/ops/selective_scan_interface.py, mamba_ssm/utils/torch.py}
    wheels/einops-*.whl, wheels/ninja-*manylinux*x86_64.whl      (used only where einops / ninja are missing)
    SOURCES.json                                                   (the repositories and commits copied)

filled from git clones of the two repositories by --copy-from, and from PyPI by pip download:

    python3 benchmarks/official_side_by_side.py --copy-from VMRNN_GIT_DIR MAMBA_GIT_DIR
    pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.12 \
        einops==0.8.2 ninja==1.13.0 -d .official/wheels
    python3 benchmarks/official_side_by_side.py --dry-run      # CPU: both models tiny, one step each
    python3 benchmarks/official_side_by_side.py --json $OUT/side_by_side.json     # the GPU measurement
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WARMUP, STEPS = 3, 20
OFFICIAL_LR = 1e-4  # the official scripts' --lr; openstl's default optimiser is Adam without weight decay


@dataclass(frozen=True)
class Config:
    """A paper config: the data's shape, the architecture and the batch, for both implementations."""

    name: str
    official_config: str  # VMRNN-PyTorch/configs/... (their hyperparameters)
    arch: str  # "vmrnn-b" or "vmrnn-d"
    channels: int
    size: int
    t_in: int
    horizon: int
    batch: int
    patch_size: int  # ours; the official's come from its config file (the same values)
    depths: int | tuple[int, int]


CONFIGS = (
    Config("Moving MNIST VMRNN-D b16", "configs/mmnist/VMRNN-D.py", "vmrnn-d", 1, 64, 10, 10, 16, 2, (2, 2)),
    Config("TaxiBJ VMRNN-B b16", "configs/taxibj/VMRNN-B.py", "vmrnn-b", 2, 32, 4, 4, 16, 4, 12),
    Config("KTH VMRNN-B b4", "configs/kth/VMRNN-B.py", "vmrnn-b", 1, 128, 10, 20, 4, 2, 6),
)
EMBED_DIM = 128
# the dry run's stand-in for every config: small frames, embed 16 (their GroupNorm needs a multiple of 16), depth 1
TINY = dict(size=16, t_in=3, horizon=2, batch=2, embed_dim=16, depth=1)

VMRNN_FILES = (
    "LICENSE",
    "openstl/models/VMRNN_model.py",
    "openstl/modules/VMRNN_modules.py",
    "openstl/modules/vmamba.py",
    *(c.official_config for c in CONFIGS),
)
MAMBA_FILES = (
    "LICENSE",
    "csrc/selective_scan",
    "mamba_ssm/ops/selective_scan_interface.py",
    "mamba_ssm/utils/torch.py",
)
# mamba's setup.py nvcc flags, less --ptxas-options=-v and -lineinfo (build logs and line tables only)
MAMBA_NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
    "--use_fast_math",
    "--threads",
    "4",
]
MAMBA_ALL_UNITS = (
    "selective_scan_fwd_fp32.cu",
    "selective_scan_fwd_fp16.cu",
    "selective_scan_fwd_bf16.cu",
    "selective_scan_bwd_fp32_real.cu",
    "selective_scan_bwd_fp32_complex.cu",
    "selective_scan_bwd_fp16_real.cu",
    "selective_scan_bwd_fp16_complex.cu",
    "selective_scan_bwd_bf16_real.cu",
    "selective_scan_bwd_bf16_complex.cu",
)
MAMBA_FP32_UNITS = ("selective_scan_fwd_fp32.cu", "selective_scan_bwd_fp32_real.cu")
# The selective_scan.cpp dispatch names every (input, weight) dtype pair; the pairs not compiled are defined here so
# that the module links, and raise if called (the official code never calls them).
NOT_BUILT_SOURCE = r"""// Written by benchmarks/official_side_by_side.py: the dtype pairs this build leaves out.
#include <cstdint>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <c10/util/complex.h>
#include "selective_scan.h"

template<typename input_t, typename weight_t> void selective_scan_fwd_cuda(SSMParamsBase &params, cudaStream_t stream);
template<typename input_t, typename weight_t> void selective_scan_bwd_cuda(SSMParamsBwd &params, cudaStream_t stream);

#define NOT_BUILT(KIND, PARAMS, INPUT, WEIGHT)                                                          \
    template<> void selective_scan_##KIND##_cuda<INPUT, WEIGHT>(PARAMS &, cudaStream_t) {              \
        TORCH_CHECK(false, "selective_scan_cuda was built for float32 inputs and real weights only: "   \
                    #KIND " with " #INPUT " inputs and " #WEIGHT " weights is not built "               \
                    "(benchmarks/official_side_by_side.py --mamba-all-dtypes builds it)");              \
    }

NOT_BUILT(fwd, SSMParamsBase, c10::Half, float)
NOT_BUILT(fwd, SSMParamsBase, c10::Half, c10::complex<float>)
NOT_BUILT(fwd, SSMParamsBase, c10::BFloat16, float)
NOT_BUILT(fwd, SSMParamsBase, c10::BFloat16, c10::complex<float>)
NOT_BUILT(bwd, SSMParamsBwd, float, c10::complex<float>)
NOT_BUILT(bwd, SSMParamsBwd, c10::Half, float)
NOT_BUILT(bwd, SSMParamsBwd, c10::Half, c10::complex<float>)
NOT_BUILT(bwd, SSMParamsBwd, c10::BFloat16, float)
NOT_BUILT(bwd, SSMParamsBwd, c10::BFloat16, c10::complex<float>)
"""


# ---------------------------------------------------------------------------------------------------------------
# the official folder


def copy_official(vmrnn_git: Path, mamba_git: Path, dest: Path) -> None:
    """Copy the files the benchmark needs out of git clones (work trees or bare git dirs) of the two repositories,
    at their HEAD, into dest/VMRNN-PyTorch and dest/mamba, and record the commits in dest/SOURCES.json."""
    sources = {}
    for name, git_dir, paths, repo in (
        ("VMRNN-PyTorch", vmrnn_git, VMRNN_FILES, "yyyujintang/VMRNN-PyTorch"),
        ("mamba", mamba_git, MAMBA_FILES, "state-spaces/mamba"),
    ):
        git = ["git", f"--git-dir={git_dir}"] if not (Path(git_dir) / ".git").exists() else ["git", "-C", str(git_dir)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        archive = subprocess.run([*git, "archive", "--format=tar", commit, *paths], check=True, capture_output=True)
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        sources[name] = {"repository": repo, "commit": commit, "paths": list(paths)}
    (dest / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(
        f"copied into {dest} ({size / 2**20:.2f} MiB): "
        + ", ".join(f"{k} {v['commit'][:7]}" for k, v in sources.items())
    )


def check_official(official: Path) -> None:
    """Exit with one line naming what is missing from the official folder."""
    needed = [official / "VMRNN-PyTorch" / p for p in VMRNN_FILES[1:]]
    needed += [official / "mamba" / p for p in MAMBA_FILES[1:]]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        sys.exit(
            f"official_side_by_side: {missing[0]} is missing ({len(missing)} path(s) in all); fill {official} with "
            "--copy-from VMRNN_GIT_DIR MAMBA_GIT_DIR (see the module docstring)"
        )


def commits(official: Path) -> str:
    try:
        sources = json.loads((official / "SOURCES.json").read_text())
    except (OSError, ValueError):
        return "commits unknown (no SOURCES.json)"
    return ", ".join(f"{v['repository']} {v['commit'][:7]}" for v in sources.values())


# ---------------------------------------------------------------------------------------------------------------
# stand-ins for the official code's imports


def _module(name: str, package: bool = False, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    if package:
        module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    if "." in name:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
    return module


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    spec.loader.exec_module(module)
    return module


def _to_2tuple(x: Any) -> tuple:
    """timm.layers.helpers.to_2tuple."""
    if isinstance(x, list | tuple):
        return tuple(x)
    return (x, x)


class _DropPath(nn.Module):
    """timm.layers.drop.DropPath (scale_by_keep=True): drop whole samples' residual branches while training."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
        if keep_prob > 0.0 and self.scale_by_keep:
            random_tensor.div_(keep_prob)
        return x * random_tensor


class _PatchEmbed(nn.Module):
    """timm.layers.patch_embed.PatchEmbed (flatten=True): (B, C, H, W) -> conv -> (B, H*W/p^2, embed) -> norm."""

    def __init__(
        self,
        img_size: Any = 224,
        patch_size: Any = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: Callable[[int], nn.Module] | None = None,
        flatten: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size = _to_2tuple(img_size), _to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)


def _not_available(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{name} is a stand-in of official_side_by_side.py (flop counting is not timed)")

    return call


def install_stand_ins(official: Path) -> dict[str, str]:
    """Make the official code's imports resolvable; returns what stands in for what (for the header line)."""
    used = {}
    _module("fvcore", package=True)
    _module(
        "fvcore.nn",
        **{
            n: _not_available(f"fvcore.nn.{n}")
            for n in ("FlopCountAnalysis", "flop_count_str", "flop_count", "parameter_count")
        },
    )
    used["fvcore"] = "stand-in"
    try:
        import timm.models.layers
        import timm.models.swin_transformer

        used["timm"] = f"timm {timm.__version__}"
    except Exception:  # not installed, or installed without a torchvision that matches torch
        for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
            del sys.modules[name]
        _module("timm", package=True)
        _module("timm.models", package=True)
        _module("timm.models.layers", DropPath=_DropPath, trunc_normal_=nn.init.trunc_normal_, to_2tuple=_to_2tuple)
        _module("timm.models.swin_transformer", PatchEmbed=_PatchEmbed)
        used["timm"] = "stand-in"
    try:
        import einops
    except ImportError:
        wheels = sorted((official / "wheels").glob("einops-*.whl"))
        if not wheels:
            sys.exit(f"official_side_by_side: einops is not installed and {official / 'wheels'} has no einops wheel")
        sys.path.insert(0, str(wheels[-1]))  # a pure-Python wheel imports from the zip itself
        import einops
    used["einops"] = f"einops {einops.__version__}"
    return used


def ensure_ninja(official: Path) -> str:
    """torch.utils.cpp_extension builds with ninja: the installed one, else the binary in the ninja wheel."""
    found = shutil.which("ninja")
    if found:
        return found
    wheels = sorted((official / "wheels").glob(f"ninja-*{platform.machine()}*.whl"))
    if not wheels:
        sys.exit(
            f"official_side_by_side: ninja is not installed and {official / 'wheels'} has no ninja wheel "
            f"for {platform.machine()}"
        )
    bin_dir = Path(tempfile.mkdtemp(prefix="ninja-"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = next(n for n in wheel.namelist() if n.endswith("/scripts/ninja"))
        (bin_dir / "ninja").write_bytes(wheel.read(member))
    (bin_dir / "ninja").chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(bin_dir / "ninja")


@dataclass
class Official:
    """The official code, loaded: its two model classes, its vmamba module and mamba's scan interface."""

    VMRNN_B_Model: type
    VMRNN_D_Model: type
    vmamba: types.ModuleType
    scan: types.ModuleType


def load_official(official: Path, kernel: types.ModuleType | None) -> Official:
    """Import the official files unchanged under their own module names (openstl.modules.vmamba, ...), with mamba's
    selective_scan_interface on `kernel` as `selective_scan_cuda` (None: no kernel, as on the CPU)."""
    vmrnn, mamba = official / "VMRNN-PyTorch", official / "mamba"
    if kernel is not None:
        sys.modules["selective_scan_cuda"] = kernel
    _module("mamba_ssm", package=True)
    _module("mamba_ssm.utils", package=True)
    _load_file("mamba_ssm.utils.torch", mamba / "mamba_ssm/utils/torch.py")
    _module("mamba_ssm.ops", package=True)
    _module("mamba_ssm.ops.triton", package=True)
    # imported by the interface for its fused Mamba block's RMSNorm, which the selective scan does not use
    _module("mamba_ssm.ops.triton.layer_norm", _layer_norm_fwd=_not_available("mamba_ssm _layer_norm_fwd"))
    scan = _load_file("mamba_ssm.ops.selective_scan_interface", mamba / "mamba_ssm/ops/selective_scan_interface.py")
    if kernel is not None and scan.selective_scan_cuda is not kernel:
        raise RuntimeError("mamba's selective_scan_interface did not pick up the built selective_scan_cuda")
    _module("openstl", package=True)
    modules = _module("openstl.modules", package=True)
    _module("openstl.models", package=True)
    vmamba = _load_file("openstl.modules.vmamba", vmrnn / "openstl/modules/vmamba.py")
    if not hasattr(vmamba, "selective_scan_fn"):  # vmamba.py imports it under a bare `except: pass`
        raise RuntimeError("the official vmamba.py could not import mamba_ssm's selective_scan_fn")
    layers = _load_file("openstl.modules.VMRNN_modules", vmrnn / "openstl/modules/VMRNN_modules.py")
    for name in ("MDownSample", "MUpSample", "MSTConvert"):  # what openstl/modules/__init__.py exports to the models
        setattr(modules, name, getattr(layers, name))
    model = _load_file("openstl.models.VMRNN_model", vmrnn / "openstl/models/VMRNN_model.py")
    return Official(model.VMRNN_B_Model, model.VMRNN_D_Model, vmamba, scan)


def official_hyperparameters(official: Path, config: Config) -> dict[str, Any]:
    """The variables of the official config file (plain assignments)."""
    values: dict[str, Any] = {}
    exec(
        compile((official / "VMRNN-PyTorch" / config.official_config).read_text(), config.official_config, "exec"),
        {},
        values,
    )
    return values


# ---------------------------------------------------------------------------------------------------------------
# mamba's selective-scan kernel


def mamba_build_plan(official: Path, build_dir: Path, arch: tuple[int, int], all_dtypes: bool) -> dict[str, Any]:
    """The torch.utils.cpp_extension.load arguments that build selective_scan_cuda for compute capability `arch`."""
    csrc = official / "mamba" / "csrc" / "selective_scan"
    sources = [csrc / "selective_scan.cpp", *(csrc / u for u in (MAMBA_ALL_UNITS if all_dtypes else MAMBA_FP32_UNITS))]
    if not all_dtypes:
        sources.append(build_dir / "selective_scan_not_built.cu")
    major, minor = arch
    return {
        "name": "selective_scan_cuda",
        "sources": [str(s) for s in sources],
        "extra_cflags": ["-O3", "-std=c++17"],
        "extra_cuda_cflags": [*MAMBA_NVCC_FLAGS, f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}"],
        "extra_include_paths": [str(csrc)],
        "build_directory": str(build_dir),
    }


def build_mamba(official: Path, build_dir: Path, arch: tuple[int, int], all_dtypes: bool, verbose: bool):
    """Build (or find built) and import selective_scan_cuda."""
    from torch.utils.cpp_extension import load

    ensure_ninja(official)
    build_dir.mkdir(parents=True, exist_ok=True)
    not_built = build_dir / "selective_scan_not_built.cu"
    if not all_dtypes and (not not_built.exists() or not_built.read_text() != NOT_BUILT_SOURCE):
        not_built.write_text(NOT_BUILT_SOURCE)
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    return load(**mamba_build_plan(official, build_dir, arch, all_dtypes), verbose=verbose)


def start_build(args: argparse.Namespace, arch: tuple[int, int]) -> tuple[subprocess.Popen, Path]:
    """Build the kernel in a child process (nvcc runs while our steps compile); its output goes to a log file."""
    build_dir = Path(args.build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--build-only",
        "--official",
        str(args.official),
        "--build-dir",
        str(build_dir),
        "--arch",
        f"{arch[0]}.{arch[1]}",
    ]
    if args.mamba_all_dtypes:
        command.append("--mamba-all-dtypes")
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log


def check_kernel(scan: types.ModuleType) -> str:
    """The built kernel's output and gradients against mamba's selective_scan_ref at one of vmamba's call shapes."""
    torch.manual_seed(0)
    b, k, d, n, length = 2, 4, 16, 16, 300
    u = torch.randn(b, k * d, length, device="cuda", requires_grad=True)
    delta = (0.5 * torch.randn(b, k * d, length, device="cuda")).requires_grad_()
    a = (-torch.rand(k * d, n, device="cuda") - 0.5).requires_grad_()
    bs, cs = (torch.randn(b, k, n, length, device="cuda", requires_grad=True) for _ in range(2))
    ds, bias = (
        torch.randn(k * d, device="cuda", requires_grad=True),
        torch.randn(k * d, device="cuda", requires_grad=True),
    )
    inputs = (u, delta, a, bs, cs, ds)
    errors = []
    outs = []
    for fn in (scan.selective_scan_fn, scan.selective_scan_ref):
        out = fn(*inputs, z=None, delta_bias=bias, delta_softplus=True)
        grads = torch.autograd.grad(out, (*inputs, bias), torch.ones_like(out))
        outs.append((out, *grads))
    for got, want in zip(*outs):
        errors.append(float((got - want).abs().max() / want.abs().max().clamp(min=1e-12)))
    return f"mamba kernel against selective_scan_ref: output and gradients within {max(errors):.1e} (relative to max)"


# ---------------------------------------------------------------------------------------------------------------
# the two training steps


def sizes(config: Config, tiny: bool) -> tuple[int, int, int, int]:
    """Frame size, input frames, output frames and batch of `config` (or of the dry run's tiny stand-in)."""
    if tiny:
        return TINY["size"], TINY["t_in"], TINY["horizon"], TINY["batch"]
    return config.size, config.t_in, config.horizon, config.batch


def official_model(off: Official, official: Path, config: Config, tiny: bool) -> nn.Module:
    """The official model of `config` as their VMRNN_D / VMRNN_B methods build it from their config file."""
    hp = official_hyperparameters(official, config)
    size, t_in, _, _ = sizes(config, tiny)
    args = SimpleNamespace(**hp, in_shape=(t_in, config.channels, size, size))
    if tiny:
        args.embed_dim = TINY["embed_dim"]
    if config.arch == "vmrnn-d":
        down = [int(x) for x in hp["depths_downsample"].split(",")]
        up = [int(x) for x in hp["depths_upsample"].split(",")]
        heads = [int(x) for x in hp["num_heads"].split(",")]
        if tiny:
            down, up = [TINY["depth"]] * len(down), [TINY["depth"]] * len(up)
        return off.VMRNN_D_Model(down, up, heads, args)
    if tiny:
        args.depths = TINY["depth"]
    return off.VMRNN_B_Model(args)


def make_official(
    off: Official, official: Path, config: Config, device: torch.device, bf16: bool, tiny: bool = False
) -> Callable[[], torch.Tensor]:
    """One step of their train_one_epoch: zero_grad, forward (their model returns the MSE loss) under autocast
    when `bf16`, backward, Adam step."""
    torch.manual_seed(0)
    model = official_model(off, official, config, tiny).to(device)
    model.train()
    size, t_in, horizon, batch = sizes(config, tiny)
    # their layout: (batch, frames, height, width, channels), input and target frames together
    ims = torch.rand(batch, t_in + horizon, size, size, config.channels, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=OFFICIAL_LR, weight_decay=0.0)

    def step() -> torch.Tensor:
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(ims)
        loss.backward()
        optimizer.step()
        return loss

    return step


def make_ours(config: Config, device: torch.device, tiny: bool = False) -> Callable[[], torch.Tensor]:
    """Our step as benchmarks/gpu_train.py's `graphs` variant builds it (vmrnn train's default on CUDA): Triton scan,
    bf16 autocast, forward and backward as CUDA graphs, AdamW. On the CPU (dry run): the torch scan, eager, float32."""
    from models import build_model
    from vmrnn_cli.training.step_modes import graphed_forward

    cuda = device.type == "cuda"
    size, t_in, horizon, batch = sizes(config, tiny)
    depths = config.depths
    if tiny:
        depths = (TINY["depth"],) * 2 if config.arch == "vmrnn-d" else TINY["depth"]
    torch.manual_seed(0)
    model = build_model(
        config.arch,
        scan_backend="triton" if cuda else "torch",
        in_channels=config.channels,
        img_size=size,
        patch_size=config.patch_size,
        embed_dim=TINY["embed_dim"] if tiny else EMBED_DIM,
        depths=depths,
    ).to(device)
    frames = torch.rand(batch, t_in + horizon, config.channels, size, size, device=device)
    inputs = frames[:, :t_in].contiguous()
    forward = graphed_forward(model, tuple(inputs.shape), horizon, device, bf16=True) if cuda else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = forward(inputs, horizon)
        loss = F.mse_loss(out.float(), frames[:, 1:])
        loss.backward()
        optimizer.step()
        return loss

    return step


def release_memory() -> None:
    """Free the last measurement's model, graphs and memory pool (graphed modules sit in reference cycles)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(build: Callable[[], Callable[[], torch.Tensor]], warmup: int, steps: int) -> dict[str, Any]:
    """Median step time (ms) of `steps` timed steps after `warmup`, peak memory (GiB) and the build time (s)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    step = build()
    setup_s = time.perf_counter() - started
    loss = None
    for _ in range(warmup):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            loss = step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {
        "ms": statistics.median(times) if times else float("nan"),
        "peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "setup_s": setup_s,
        "loss": float(loss.detach()) if loss is not None else float("nan"),
        "steps": steps,
    }


def guarded(label: str, build: Callable[[], Callable[[], torch.Tensor]], warmup: int, steps: int) -> dict[str, Any]:
    """measure(...), or a row saying why it failed (OOM, a capture or kernel error); memory released either way."""
    try:
        row = measure(build, warmup, steps)
    except Exception as err:  # torch.OutOfMemoryError, a failed capture, a kernel error: one row says which
        first = next(iter(str(err).strip().splitlines()), "")
        row = {
            "ms": float("nan"),
            "peak_GiB": float("nan"),
            "error": "OOM" if isinstance(err, torch.OutOfMemoryError) else f"{type(err).__name__}: {first[:160]}",
        }
    release_memory()
    row["run"] = label
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------------------------------------------
# the table


def cell(row: dict[str, Any] | None, peak: bool = False) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return row["error"] if row["error"] == "OOM" else "failed"
    measured = row["peak_GiB"] == row["peak_GiB"]  # NaN on the CPU
    return f"{row['ms']:.1f} ({row['peak_GiB']:.1f} GiB)" if peak and measured else f"{row['ms']:.1f}"


def table(results: list[dict[str, Any]], unit: str = "ms") -> str:
    lines = [
        f"| config | ours {unit} (peak GiB) | official fp32 {unit} (peak GiB) | official bf16 {unit} (peak GiB) "
        "| official best / ours |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ours, fp32, bf16 = r.get("ours"), r.get("official fp32"), r.get("official bf16")
        best = min((x["ms"] for x in (fp32, bf16) if x and "error" not in x), default=float("nan"))
        ratio = best / ours["ms"] if ours and "error" not in ours else float("nan")
        ratio_text = "-" if ratio != ratio else f"{ratio:.2f}x"
        lines.append(f"| {r['config']} | {cell(ours, True)} | {cell(fp32, True)} | {cell(bf16, True)} | {ratio_text} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# the runs


def dry_run(args: argparse.Namespace) -> None:
    """CPU: every config at a tiny size, one official step (mamba's selective_scan_ref as their scan) and one of
    ours; the kernel build's arguments are printed, not run."""
    official = Path(args.official)
    check_official(official)
    used = install_stand_ins(official)
    off = load_official(official, kernel=None)
    off.vmamba.selective_scan_fn = off.scan.selective_scan_ref  # vmamba's forward_corev0 looks the name up per call
    device = torch.device("cpu")
    print(
        f"dry run on the CPU, torch {torch.__version__}; {commits(official)}; "
        + ", ".join(f"{k}: {v}" for k, v in used.items())
    )
    plan = mamba_build_plan(official, Path(args.build_dir), (9, 0), args.mamba_all_dtypes)
    print("kernel build (not run here): torch.utils.cpp_extension.load(" + json.dumps(plan) + ")")
    results = []
    for config in [CONFIGS[i] for i in args.configs]:
        n_params = sum(p.numel() for p in official_model(off, official, config, tiny=False).parameters())
        print(f"{config.name}: official model at full size built, {n_params / 1e6:.2f} M parameters")
        row = {"config": f"{config.name} (tiny)"}
        row["ours"] = guarded(f"{config.name} ours", partial(make_ours, config, device, tiny=True), 0, 1)
        for precision in ("fp32", "bf16"):  # bf16 autocast on the CPU: the code path, not a timing
            row[f"official {precision}"] = guarded(
                f"{config.name} official {precision}",
                partial(make_official, off, official, config, device, precision == "bf16", tiny=True),
                0,
                1,
            )
        results.append(row)
    print("\n" + table(results, unit="CPU ms"))
    failed = [r for row in results for r in row.values() if isinstance(r, dict) and "error" in r]
    if failed:
        sys.exit(f"official_side_by_side: {len(failed)} dry-run step(s) failed")


def gpu_run(args: argparse.Namespace) -> None:
    official = Path(args.official)
    check_official(official)
    if not torch.cuda.is_available():
        sys.exit("official_side_by_side: no CUDA GPU here (--dry-run checks the CPU-side parts)")
    started = time.perf_counter()
    arch = torch.cuda.get_device_capability()
    used = install_stand_ins(official)
    build, log = (None, None) if args.no_official else start_build(args, arch)
    import triton

    configs = [CONFIGS[i] for i in args.configs]
    device = torch.device("cuda")
    print(
        f"{torch.cuda.get_device_name()} (sm_{arch[0]}{arch[1]}), torch {torch.__version__}, triton "
        f"{triton.__version__}; {commits(official)}; " + ", ".join(f"{k}: {v}" for k, v in used.items()),
        flush=True,
    )
    # our steps once each while nvcc runs: Triton compiles its kernels, the CUDA graphs are captured
    for config in configs:
        guarded(f"{config.name} ours (warm-up, not timed)", partial(make_ours, config, device), 1, 0)
    off = None
    if build is not None:
        waited = time.perf_counter()
        code = build.wait()
        if code != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
            print(f"building mamba's kernel failed (exit {code}); the last lines of {log}:\n{tail}", flush=True)
        else:
            kernel = build_mamba(official, Path(args.build_dir), arch, args.mamba_all_dtypes, verbose=False)
            off = load_official(official, kernel)
            print(
                f"mamba's kernel built {time.perf_counter() - started:.0f} s after the start (waited "
                f"{time.perf_counter() - waited:.0f} s for it; log {log}); {check_kernel(off.scan)}",
                flush=True,
            )
    results = []
    for config in configs:
        row = {"config": config.name}
        row["ours"] = guarded(f"{config.name} ours", partial(make_ours, config, device), WARMUP, args.steps)
        if off is not None:
            for precision in ("fp32", "bf16"):
                row[f"official {precision}"] = guarded(
                    f"{config.name} official {precision}",
                    partial(make_official, off, official, config, device, precision == "bf16"),
                    WARMUP,
                    args.steps,
                )
        results.append(row)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(
        f"\nmedian of {args.steps} training steps after {WARMUP} warm-up steps, one process, "
        f"{time.perf_counter() - started:.0f} s in all\n"
    )
    print(table(results))


def parse_configs(text: str) -> list[int]:
    try:
        indices = [int(i) for i in text.split(",") if i]
    except ValueError:
        indices = []
    if not indices or any(not 0 <= i < len(CONFIGS) for i in indices):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a comma list of config numbers: " + ", ".join(f"{i} {c.name}" for i, c in enumerate(CONFIGS))
        )
    return indices


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", default=str(ROOT / ".official"), help="folder of the official sources")
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "official_mamba"), help="kernel build folder")
    parser.add_argument("--configs", default="0,1,2", type=parse_configs, help="comma list of config numbers")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"timed steps (after {WARMUP} warm-up steps)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    parser.add_argument("--no-official", action="store_true", help="time ours only (no kernel build)")
    parser.add_argument("--mamba-all-dtypes", action="store_true", help="build every dtype of mamba's kernel")
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny models, one step each, no kernel build")
    parser.add_argument(
        "--copy-from",
        nargs=2,
        metavar=("VMRNN_GIT_DIR", "MAMBA_GIT_DIR"),
        help="fill --official from git clones of the two repositories, then exit",
    )
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.copy_from:
        copy_official(Path(args.copy_from[0]), Path(args.copy_from[1]), Path(args.official))
    elif args.build_only:
        major, minor = (int(x) for x in args.arch.split("."))
        build_mamba(Path(args.official), Path(args.build_dir), (major, minor), args.mamba_all_dtypes, verbose=True)
    elif args.dry_run:
        dry_run(args)
    else:
        gpu_run(args)


if __name__ == "__main__":
    main()
