"""The training recipe: AdamW with weight decay, a linear warm-up then cosine decay of the learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

WARMUP_FRACTION = 0.05  # linear warm-up over the first 5% of the steps, then cosine decay to 0
WEIGHT_DECAY = 0.05


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up to `peak` over the first WARMUP_FRACTION of `total` steps, then cosine decay to 0."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters at peak learning rate `lr` (set per step by `learning_rate`)."""
    return torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=WEIGHT_DECAY)
