"""Selective-scan (Mamba S6) backends: reference oracle, chunked PyTorch, mamba_ssm CUDA, Triton."""

from models.scan.inputs import ScanInputs
from models.scan.interface import BACKENDS, get_backend, resolve_backend, selective_scan
from models.scan.reference import selective_scan_reference
from models.scan.torch_scan import selective_scan_torch

__all__ = [
    "BACKENDS",
    "ScanInputs",
    "get_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_torch",
]
