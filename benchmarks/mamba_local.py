"""The GPU benchmarks' optional build of mamba_ssm's CUDA kernel, and the repository root on sys.path.

`.mamba/mamba_kernel.py` is a local, uncommitted helper that builds the kernel from mamba_ssm's sources in
`.mamba/csrc/selective_scan` (see RESULTS.md); without it `mamba_kernel` is None and the mamba rows are left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAMBA_SRC = ROOT / ".mamba/csrc/selective_scan"
sys.path[:0] = [str(ROOT), str(ROOT / ".mamba")]

try:
    import mamba_kernel
except ImportError:
    mamba_kernel = None
