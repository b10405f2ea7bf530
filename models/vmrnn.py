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


class _Forecaster(nn.Module):
    """What both variants share: the patch embedding, the inflation head, and the rollout (teacher forcing over
    the context, then the model's own outputs fed back).

    Set `checkpoint_steps = True` to trade compute for memory in training: while gradients are recorded,
    only each frame's inputs and recurrent state are kept and the frame's internals are recomputed in backward.
    """

    checkpoint_steps: bool = False

    def __init__(self, in_channels: int, img_size: int | tuple[int, int], patch_size: int, embed_dim: int,
                 output_activation: str, grid_multiple: int) -> None:  # fmt: skip
        """The checks and the patch embedding; a subclass then adds its cells and calls `_add_head`."""
        super().__init__()
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of 2 >= 2, got {patch_size}")
        if output_activation not in ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {', '.join(ACTIVATIONS)}, got {output_activation!r}")
        self.in_channels = in_channels
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
        self.grid_multiple = grid_multiple  # frames are padded to a multiple of this (patch size x merging factor)
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)

    def _add_head(self, embed_dim: int, patch_size: int, output_activation: str) -> None:
        """The patch inflation back to the frame and the output activation (after the cells, in parameter order)."""
        self.inflate = PatchInflation(self.in_channels, embed_dim, patch_size)
        self.activation = ACTIVATIONS[output_activation]()

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One frame (b, C, H, W) in (H, W multiples of grid_multiple), the next frame and the new state out."""
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
        super().__init__(in_channels, img_size, patch_size, embed_dim, output_activation, grid_multiple=patch_size)
        self.cell = VMRNNCell(embed_dim, depths, d_state, [drop_path] * depths, scan_backend)
        self._add_head(embed_dim, patch_size, output_activation)

    def step(self, frame: Tensor, state: State | None) -> tuple[Tensor, State]:
        """One frame (b, C, H, W) in (H, W multiples of the patch), the next frame out."""
        h, state = self.cell(self.patch_embed(frame), state)
        return self.activation(self.inflate(h)), state


def _stage_rates(depths: tuple[int, ...], drop_path: float) -> list[list[float]]:
    """Each stage's blocks' DropPath rates: 0 to drop_path, linearly over all the stages' blocks in order."""
    rates = torch.linspace(0, drop_path, sum(depths)).tolist()
    return [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]


def _run_stages(x: Tensor, cells: nn.ModuleList, resamples: nn.ModuleList, states: list[State | None]
                ) -> tuple[Tensor, list[State]]:  # fmt: skip
    """x through each stage's cell and then its merge or expansion; returns x and the cells' new states."""
    new_states = []
    for cell, resample, cell_state in zip(cells, resamples, states):
        x, cell_state = cell(x, cell_state)
        x = resample(x)
        new_states.append(cell_state)
    return x, new_states


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
        depths = tuple(depths)
        depths_up = depths if depths_up is None else tuple(depths_up)
        if len(depths_up) != len(depths):
            raise ValueError(f"depths_up {depths_up} must have as many stages as depths {depths}")
        stages = len(depths)
        multiple = patch_size * 2**stages
        super().__init__(in_channels, img_size, patch_size, embed_dim, output_activation, grid_multiple=multiple)
        # The official up path builds a second patch embedding it never calls; it is kept, frozen, so that
        # parameter counts equal the paper's.
        self.unused_patch_embed = PatchEmbed(in_channels, embed_dim, patch_size).requires_grad_(False)
        down_rates, up_rates = _stage_rates(depths, drop_path), _stage_rates(depths_up, drop_path)
        self.down_cells = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            self.down_cells.append(VMRNNCell(dim, depth, d_state, down_rates[i], scan_backend))
            self.merges.append(PatchMerging(dim))
        self.up_cells = nn.ModuleList()
        self.expands = nn.ModuleList()
        for i in reversed(range(stages)):
            dim = embed_dim * 2 ** (i + 1)
            self.up_cells.append(VMRNNCell(dim, depths_up[i], d_state, up_rates[i], scan_backend))
            self.expands.append(PatchExpanding(dim))
        self._add_head(embed_dim, patch_size, output_activation)

    def step(
        self, frame: Tensor, state: tuple[list[State | None], list[State | None]] | None
    ) -> tuple[Tensor, tuple[list[State], list[State]]]:
        """One frame (b, C, H, W) in (H, W multiples of grid_multiple), the next frame out."""
        down_states, up_states = state or ([None] * len(self.down_cells), [None] * len(self.up_cells))
        x, new_down = _run_stages(self.patch_embed(frame), self.down_cells, self.merges, down_states)
        x, new_up = _run_stages(x, self.up_cells, self.expands, up_states)
        return self.activation(self.inflate(x)), (new_down, new_up)


ARCHITECTURES = {"vmrnn-b": VMRNN_B, "vmrnn-d": VMRNN_D}


def build_model(arch: str, **kwargs: Any) -> VMRNN_B | VMRNN_D:
    """The model named `arch` ("vmrnn-b" or "vmrnn-d") built with the constructor keywords given."""
    try:
        model_class = ARCHITECTURES[arch.lower()]
    except KeyError:
        raise ValueError(f"unknown model architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return model_class(**kwargs)
