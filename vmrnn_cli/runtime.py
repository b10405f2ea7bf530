"""What the commands share about the machine they run on: which device computes."""

from __future__ import annotations

import torch

from vmrnn_cli.errors import VmrnnError


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """auto -> CUDA when there is one; under torchrun each process takes GPU LOCAL_RANK."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise VmrnnError("`device` cuda: no CUDA GPU is available here (use cpu or auto)")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
