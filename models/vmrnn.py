"""VMRNN-B and VMRNN-D (Tang et al., arXiv 2403.16536): recurrent Vision-Mamba/LSTM frame forecasters."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.layers import (
    DropPath,
    PatchEmbed,
    PatchExpanding,
    PatchInflation,
    PatchMerging,
    State,
    VMRNNCell,
    pad_to_multiple,
)

ACTIVATIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid}


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_common(patch_size: int, output_activation: str) -> None:
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ValueError(f"patch_size must be a power of 2 >= 2, got {patch_size}")
    if output_activation not in ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {', '.join(ACTIVATIONS)}, got {output_activation!r}")


class _Forecaster(nn.Module):
    """Shared rollout: teacher forcing over the context, then the model's own outputs fed back.

    Set `checkpoint_steps = True` to trade compute for memory in training: while gradients are recorded,
    only each frame's inputs and recurrent state are kept and the frame's internals are recomputed in backward.
    """

    in_channels: int
    grid_multiple: int  # frames are padded to a multiple of this (patch size x merging factor)
    checkpoint_steps: bool = False

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _checkpointed_step(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
        """self.step whose internals are recomputed in backward, so only its inputs and outputs stay alive."""
        # The RNG is replayed only when a step draws random numbers: saving CUDA RNG state inside a CUDA-graph
        # capture needs torch >= 2.10, and a deterministic step recomputes the same without it.
        random = self.training and any(isinstance(m, DropPath) and m.p > 0 for m in self.modules())
        return partial(checkpoint, self.step, use_reentrant=False, preserve_rng_state=random)

    def forward(self, frames: Tensor, horizon: int) -> Tensor:
        """frames (b, T_in, C, H, W) -> (b, T_in - 1 + horizon, C, H, W); output i predicts frame i + 1."""
        if frames.dim() != 5 or frames.shape[2] != self.in_channels:
            raise ValueError(f"expected frames (batch, time, {self.in_channels}, H, W), got {tuple(frames.shape)}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        height, width = frames.shape[-2:]
        step = self._checkpointed_step() if self.checkpoint_steps and torch.is_grad_enabled() else self.step
        state = None
        outputs = []
        for i in range(frames.shape[1] - 1):
            out, state = step(pad_to_multiple(frames[:, i], self.grid_multiple), state)
            outputs.append(out[..., :height, :width])
        frame = frames[:, -1]
        for _ in range(horizon):
            out, state = step(pad_to_multiple(frame, self.grid_multiple), state)
            frame = out[..., :height, :width]
            outputs.append(frame)
        return torch.stack(outputs, dim=1)


class VMRNN_B(_Forecaster):
    """VMRNN-B: patch embedding -> one VMRNN cell of `depths` blocks -> patch inflation.

    Defaults are the paper's TaxiBJ config. No parameter depends on img_size: it records the frame size the
    model is meant for, and any other H x W works too (frames are padded to the patch grid and cropped back).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: int | tuple[int, int] = (32, 32),
        patch_size: int = 4,
        embed_dim: int = 128,
        depths: int = 12,
        d_state: int = 16,
        drop_path: float = 0.0,
        output_activation: str = "identity",
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_common(patch_size, output_activation)
        self.in_channels = in_channels
        self.img_size = _pair(img_size)
        self.grid_multiple = patch_size
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        self.cell = VMRNNCell(embed_dim, depths, d_state, [drop_path] * depths, scan_backend)
        self.inflate = PatchInflation(in_channels, embed_dim, patch_size)
        self.activation = ACTIVATIONS[output_activation]()

    def step(self, frame: Tensor, state: State | None) -> tuple[Tensor, State]:
        """One frame (b, C, H, W) in (H, W multiples of the patch), the next frame out."""
        h, state = self.cell(self.patch_embed(frame), state)
        return self.activation(self.inflate(h)), state


class VMRNN_D(_Forecaster):
    """VMRNN-D: patch embedding -> cells with patch merging (down) -> cells with patch expanding (up) -> inflation.

    Down stage i works at embed_dim * 2**i channels and ends with a merge; up stage i works at
    embed_dim * 2**(i + 1) channels (coarse to fine) with depth depths_up[i], as in the official code.
    Defaults are the paper's Moving-MNIST config; frames are padded to multiples of patch * 2**len(depths).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: int | tuple[int, int] = (64, 64),
        patch_size: int = 2,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2),
        depths_up: tuple[int, ...] | None = None,
        d_state: int = 16,
        drop_path: float = 0.0,
        output_activation: str = "identity",
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_common(patch_size, output_activation)
        depths = tuple(depths)
        depths_up = depths if depths_up is None else tuple(depths_up)
        if len(depths_up) != len(depths):
            raise ValueError(f"depths_up {depths_up} must have as many stages as depths {depths}")
        stages = len(depths)
        self.in_channels = in_channels
        self.img_size = _pair(img_size)
        self.grid_multiple = patch_size * 2**stages
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        # The official up path builds a second patch embedding it never calls; it is kept, frozen, so that
        # parameter counts equal the paper's.
        self.unused_patch_embed = PatchEmbed(in_channels, embed_dim, patch_size).requires_grad_(False)
        down_rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        up_rates = torch.linspace(0, drop_path, sum(depths_up)).tolist()
        self.down_cells = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            rates = down_rates[sum(depths[:i]) : sum(depths[: i + 1])]
            self.down_cells.append(VMRNNCell(dim, depth, d_state, rates, scan_backend))
            self.merges.append(PatchMerging(dim))
        self.up_cells = nn.ModuleList()
        self.expands = nn.ModuleList()
        for i in reversed(range(stages)):
            dim = embed_dim * 2 ** (i + 1)
            rates = up_rates[sum(depths_up[:i]) : sum(depths_up[: i + 1])]
            self.up_cells.append(VMRNNCell(dim, depths_up[i], d_state, rates, scan_backend))
            self.expands.append(PatchExpanding(dim))
        self.inflate = PatchInflation(in_channels, embed_dim, patch_size)
        self.activation = ACTIVATIONS[output_activation]()

    def step(
        self, frame: Tensor, state: tuple[list[State | None], list[State | None]] | None
    ) -> tuple[Tensor, tuple[list[State], list[State]]]:
        """One frame (b, C, H, W) in (H, W multiples of grid_multiple), the next frame out."""
        down_states, up_states = state or ([None] * len(self.down_cells), [None] * len(self.up_cells))
        x = self.patch_embed(frame)
        new_down, new_up = [], []
        for cell, merge, cell_state in zip(self.down_cells, self.merges, down_states):
            x, cell_state = cell(x, cell_state)
            x = merge(x)
            new_down.append(cell_state)
        for cell, expand, cell_state in zip(self.up_cells, self.expands, up_states):
            x, cell_state = cell(x, cell_state)
            x = expand(x)
            new_up.append(cell_state)
        return self.activation(self.inflate(x)), (new_down, new_up)


ARCHITECTURES = {"vmrnn-b": VMRNN_B, "vmrnn-d": VMRNN_D}


def build_model(arch: str, **kwargs: Any) -> VMRNN_B | VMRNN_D:
    """The model named `arch` ("vmrnn-b" or "vmrnn-d") built with the constructor keywords given."""
    try:
        model_class = ARCHITECTURES[arch.lower()]
    except KeyError:
        raise ValueError(f"unknown model architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return model_class(**kwargs)
