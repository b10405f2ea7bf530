"""Forecast a whole scene of any size with overlapping square tiles blended by a smooth window."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

FLOOR = 0.05  # the window never reaches 0, so a pixel at the scene edge (seen by one tile only) still counts


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` overlapping by at least `overlap` that cover [0, size)."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile - 1}], got {overlap}")
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def blend_window(tile: int, overlap: int, floor: float = FLOOR) -> np.ndarray:
    """A 2-D weight (tile, tile): 1 inside, a cosine taper down to `floor` over `overlap` pixels at each edge."""
    distance = np.minimum(np.arange(tile), np.arange(tile)[::-1]) + 0.5
    ramp = np.ones(tile) if overlap == 0 else np.sin(0.5 * np.pi * np.minimum(distance / overlap, 1.0)) ** 2
    weight = floor + (1.0 - floor) * ramp
    return np.outer(weight, weight).astype(np.float32)


def forecast_tiled(
    forecast: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    tile: int,
    overlap: int,
    batch_size: int,
) -> torch.Tensor:
    """Apply `forecast` ((B, T, C, tile, tile) -> (B, N, C, tile, tile)) to a (T, C, H, W) scene tile by tile.

    A scene smaller than a tile is zero-padded (zero = the training mean in normalised units) and
    cropped back. Returns the blended (N, C, H, W) forecast on the CPU in float32.
    """
    _, channels, height, width = frames.shape
    pad_h, pad_w = max(tile - height, 0), max(tile - width, 0)
    scene = torch.nn.functional.pad(frames, (0, pad_w, 0, pad_h))
    full_h, full_w = scene.shape[-2:]
    corners = [(y, x) for y in tile_starts(full_h, tile, overlap) for x in tile_starts(full_w, tile, overlap)]
    weight = torch.from_numpy(blend_window(tile, overlap))
    total: torch.Tensor | None = None
    weight_sum = torch.zeros(full_h, full_w)
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        tiles = torch.stack([scene[:, :, y:y + tile, x:x + tile] for y, x in batch])
        out = forecast(tiles).float().cpu()
        if total is None:
            total = torch.zeros(out.shape[1], channels, full_h, full_w)
        for (y, x), piece in zip(batch, out):
            total[:, :, y:y + tile, x:x + tile] += piece * weight
            weight_sum[y:y + tile, x:x + tile] += weight
    assert total is not None
    return (total / weight_sum)[:, :, :height, :width]
