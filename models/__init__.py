"""The VMRNN network (Vision Mamba + LSTM) and its selective-scan backends; depends on torch only."""

from models.scan import get_backend, selective_scan
from models.vmrnn import VMRNN_B, VMRNN_D, build_model

__all__ = ["VMRNN_B", "VMRNN_D", "build_model", "get_backend", "selective_scan"]
