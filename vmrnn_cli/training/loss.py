"""The training loss: mean squared error over the pixels whose target is valid (NaN/nodata masked out)."""

from __future__ import annotations

import torch


def masked_sse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over finite target pixels (float32) and how many there are."""
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred.float() - torch.nan_to_num(target.float()), 0.0)
    return (diff * diff).sum(), mask.sum()


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over finite target pixels; 0 (still differentiable) when none is finite."""
    sse, count = masked_sse(pred, target)
    return sse / count.clamp(min=1)
