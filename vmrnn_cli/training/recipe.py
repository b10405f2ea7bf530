"""The training recipe, shared by `vmrnn train` and benchmarks/skill_at_budget.py: AdamW whose weight decay skips
biases, norms and the SSM's own parameters; a linear warm-up then cosine decay of the learning rate; the masked MSE
of every predicted next frame under bf16 autocast on CUDA; and the data's scale as the output head needs it."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vmrnn_cli.errors import OptionError
from vmrnn_cli.options import TrainConfig
from vmrnn_cli.training.loss import masked_sse

if TYPE_CHECKING:
    from collections.abc import Callable

    from vmrnn_cli.data.cube import Cube

WARMUP_FRACTION = 0.05  # linear warm-up over the first 5% of the steps, then cosine decay to 0
WEIGHT_DECAY = TrainConfig.weight_decay  # the default
NORMS = (nn.LayerNorm, nn.GroupNorm)
# SS2D's selective-scan parameters (models/ss2d.py): A = -exp(A_logs), the skip D, the bias of dt's softplus.
# Decay would pull A towards -1, D towards 0 and dt towards softplus(0): the scan's dynamics, not a weight's size.
SSM_PARAMETERS = ("A_logs", "Ds", "dt_projs_bias")


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up to `peak` over the first WARMUP_FRACTION of `total` steps, then cosine decay to 0 at `total`
    (and 0 after it)."""
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    step = min(step, total)
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def decay_split(net: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """The trainable parameters as (name, parameter), in `net.parameters()` order, split into those that get weight
    decay (weight matrices and convolution kernels) and those that never do: biases, the norms' weights and biases
    (LayerNorm, GroupNorm) and the SSM parameters named in SSM_PARAMETERS."""
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()
    for module_name, module in net.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{module_name}.{name}" if module_name else name
            exempt = isinstance(module, NORMS) or name == "bias" or name in SSM_PARAMETERS
            (no_decay if exempt else decay).append((full, param))
    return decay, no_decay


def make_optimizer(net: nn.Module, config: TrainConfig | float) -> torch.optim.AdamW:
    """AdamW at peak learning rate `config.lr` (set per step by `learning_rate`) in two parameter groups: the
    weights with `config.weight_decay`, and biases, norms and SSM parameters (`decay_split`) without any.
    At weight_decay 0 this is Adam (the same update). A bare number is a learning rate with the default decay."""
    if not isinstance(config, TrainConfig):
        config = TrainConfig(lr=float(config))
    decay, no_decay = decay_split(net)
    groups = [
        {"params": [p for _, p in decay], "weight_decay": float(config.weight_decay)},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def optimizer_state(saved: dict[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A saved optimizer state_dict ready for `optimizer.load_state_dict`. Checkpoints written before the
    parameters were grouped hold one AdamW group over `net.parameters()` (decay on every parameter): their moments
    are moved to the two groups of `make_optimizer`, both with the saved hyperparameters, so that such a run
    resumes exactly as it trained. Any other state is returned as it is."""
    if len(saved["param_groups"]) != 1 or len(optimizer.param_groups) != 2:
        return saved
    old = saved["param_groups"][0]
    position = {id(p): i for i, p in enumerate(p for p in net.parameters() if p.requires_grad)}
    if len(old["params"]) != len(position):
        return saved  # not the layout described above; load_state_dict names the mismatch
    state, groups, index = {}, [], 0
    for group in optimizer.param_groups:
        ids = []
        for param in group["params"]:
            old_id = old["params"][position[id(param)]]
            if old_id in saved["state"]:
                state[index] = saved["state"][old_id]
            ids.append(index)
            index += 1
        groups.append({**old, "params": ids})
    return {"state": state, "param_groups": groups}


def forward_loss(
    model: Callable[[Tensor, int], Tensor], batch: Tensor, input_frames: int, output_frames: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Sum of squared errors and valid-pixel count over every predicted next frame of a batch of windows
    (b, input_frames + output_frames, C, H, W): NaN inputs read as 0, NaN targets masked; bf16 autocast on CUDA."""
    inputs = torch.nan_to_num(batch[:, :input_frames])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(inputs, output_frames)
    return masked_sse(out, batch[:, 1:])


def fit_cube_to_head(cube: Cube, config: TrainConfig) -> Cube:
    """The cube as the output head trains on it. "identity": as it is (standardised by its per-band mean and std).
    "sigmoid" predicts values in (0, 1), so it trains on the cube's own values, not standardised: the cube comes back
    with mean 0 and std 1, which the datasets and the checkpoint then use, so that predict and evaluate read the
    model's outputs as physical values. Refused (OptionError) unless every valid value of the cube lies in [0, 1];
    finding its range reads the whole cube once."""
    if config.output_activation != "sigmoid":
        return cube
    import dask
    import numpy as np

    low, high = (float(v) for v in dask.compute(cube.data.min(skipna=True), cube.data.max(skipna=True)))
    if not (low >= 0.0 and high <= 1.0):  # also refuses an all-NaN cube (NaN range)
        raise OptionError(
            "output_activation",
            f"sigmoid needs data within [0, 1] (it trains on the cube's own values, not standardised ones); "
            f"{cube.path} holds values in [{low:g}, {high:g}] (use identity, the default)",
        )
    return dataclasses.replace(cube, mean=np.zeros_like(cube.mean), std=np.ones_like(cube.std))
