"""The one place that maps a selective-scan backend name to its function (pysteps-style `get_backend`)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from models.scan.inputs import ScanInputs, scan_signature
from models.scan.reference import selective_scan_reference
from models.scan.torch_scan import selective_scan_torch

BACKENDS = ("auto", "reference", "torch", "mamba", "triton")


def _mamba() -> Callable[..., Tensor]:
    return importlib.import_module("models.scan.mamba").selective_scan_mamba


def _triton() -> Callable[..., Tensor]:
    return importlib.import_module("models.scan.triton_scan").selective_scan_triton


@functools.cache
def _auto(device_type: str) -> str:
    """triton, then mamba on CUDA (SS2D runs ours fused, faster in the model: benchmarks/RESULTS.md), torch elsewhere.

    Cached, so a missing package is looked for once, not on every call.
    """
    if device_type == "cuda":
        for name, loader in (("triton", _triton), ("mamba", _mamba)):
            try:
                loader()
                return name
            except ImportError:
                continue
    return "torch"


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """The backend that `name` stands for on `device`: "auto" becomes triton, then mamba on CUDA, torch elsewhere."""
    if name not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return _auto("cpu" if device is None else torch.device(device).type)
    return name


def get_backend(name: str, device: torch.device | str | None = None) -> Callable[..., Tensor]:
    """The scan function called `name` ("auto" resolved for `device` by `resolve_backend`)."""
    name = resolve_backend(name, device)
    if name == "reference":
        return selective_scan_reference
    if name == "torch":
        return selective_scan_torch
    return _mamba() if name == "mamba" else _triton()


@scan_signature
def selective_scan(x: ScanInputs, backend: str = "auto", **options: Any) -> Tensor:
    """Mamba's selective scan, with mamba_ssm's `selective_scan_fn` arguments, by the backend named `backend`
    (and that backend's options, such as the torch backend's chunk_size)."""
    return get_backend(backend, x.u.device)(*x, **options)
