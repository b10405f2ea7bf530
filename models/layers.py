"""Building blocks of VMRNN: patch embedding/merging/expanding/inflation, the Vision-Mamba block, the cell.

Token grids are channels-last, (batch, H, W, C), throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.ss2d import SS2D

State = tuple[Tensor, Tensor]


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch for a random subset of samples while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x, or x with whole samples zeroed (the rest scaled by 1 / (1 - p)) while training."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class PatchEmbed(nn.Module):
    """(b, C, H, W) -> (b, H/p, W/p, E): non-overlapping p x p patches, linear projection, LayerNorm."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(b, C, H, W) frame -> (b, H/p, W/p, E) tokens."""
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """(b, H, W, C) -> (b, H/2, W/2, 2C): each 2 x 2 group concatenated, LayerNorm, linear reduction (Swin)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(b, H, W, C) -> (b, H/2, W/2, 2C)."""
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), dim=-1)
        return self.reduction(self.norm(x))


class PatchExpanding(nn.Module):
    """(b, H, W, C) -> (b, 2H, 2W, C/2): linear to 2C, each token unfolded into a 2 x 2 group, LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        """(b, H, W, C) -> (b, 2H, 2W, C/2)."""
        b, h, w, c = x.shape
        x = self.expand(x).view(b, h, w, 2, 2, c // 2).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c // 2)
        return self.norm(x)


class PatchInflation(nn.Module):
    """(b, H/p, W/p, E) -> (b, C, H, W): stride-2 transposed 3x3 convolutions back to the frame (p a power of 2)."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        upsample = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(patch_size)) - 1):
            layers += [
                nn.ConvTranspose2d(embed_dim, embed_dim, **upsample),
                nn.GroupNorm(math.gcd(16, embed_dim), embed_dim),
                nn.LeakyReLU(0.2),
            ]
        self.hidden = nn.Sequential(*layers)
        self.out = nn.ConvTranspose2d(embed_dim, in_channels, **upsample)

    def forward(self, x: Tensor) -> Tensor:
        """(b, H/p, W/p, E) tokens -> (b, C, H, W) frame."""
        return self.out(self.hidden(x.permute(0, 3, 1, 2)))


class VSB(nn.Module):
    """Vision-Mamba block x + DropPath(SS2D(LN(x))); the cell's first block mixes in LN(h) via a linear layer.

    Like the official code every block owns the (2C -> C) linear layer; in blocks that never see h it is
    frozen (requires_grad=False), so parameter counts match the paper's and DDP sees no unused gradients.
    """

    def __init__(self, dim: int, d_state: int, drop_path: float, takes_hidden: bool, scan_backend: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(2 * dim, dim)
        self.linear.requires_grad_(takes_hidden)
        self.ss2d = SS2D(dim, d_state=d_state, scan_backend=scan_backend)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, hidden: Tensor | None = None) -> Tensor:
        """x (b, H, W, C) plus the SS2D branch; `hidden` (the cell's h) is mixed in by the first block only."""
        mixed = self.norm(x)
        if hidden is not None:
            mixed = self.linear(torch.cat((mixed, self.norm(hidden)), dim=-1))
        return x + self.drop_path(self.ss2d(mixed))


class VMRNNCell(nn.Module):
    """VMRNN cell: o = VSBs(x, h); F = sigmoid(o); c' = F * (c + tanh(o)); h' = F * tanh(c')."""

    def __init__(self, dim: int, depth: int, d_state: int, drop_path: list[float], scan_backend: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            VSB(dim, d_state, drop_path[i], takes_hidden=i == 0, scan_backend=scan_backend) for i in range(depth)
        )

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """x (b, H, W, C); state (h, c) of the same shape, or None for zeros. Returns h' and (h', c')."""
        h, c = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        o = self.blocks[0](x, h)
        for block in self.blocks[1:]:
            o = block(o)
        gate = torch.sigmoid(o)
        c = gate * (c + torch.tanh(o))
        h = gate * torch.tanh(c)
        return h, (h, c)


def pad_to_multiple(frame: Tensor, multiple: int) -> Tensor:
    """(b, C, H, W) padded at the bottom/right by edge replication up to multiples of `multiple`."""
    height, width = frame.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return frame
    return F.pad(frame, (0, pad_w, 0, pad_h), mode="replicate")
