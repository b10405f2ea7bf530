"""Forecast a whole scene of any size with overlapping square tiles blended by a smooth window."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vmrnn_cli.progress import Steps

FLOOR = 0.05  # the window never reaches 0, so a pixel at the scene edge (seen by one tile only) still counts
FREE_SHARE = 0.75  # the share of a GPU's free memory the scene and the forecast canvas may take (the rest: the model)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` overlapping by at least `overlap` that cover [0, size)."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile - 1}], got {overlap}")
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def blend_profile(tile: int, overlap: int, floor: float = FLOOR) -> np.ndarray:
    """The window along one axis (tile,): 1 inside, a cosine taper down to `floor` over `overlap` pixels at each end."""
    distance = np.minimum(np.arange(tile), np.arange(tile)[::-1]) + 0.5
    ramp = np.ones(tile) if overlap == 0 else np.sin(0.5 * np.pi * np.minimum(distance / overlap, 1.0)) ** 2
    return floor + (1.0 - floor) * ramp


def blend_window(tile: int, overlap: int, floor: float = FLOOR) -> np.ndarray:
    """A 2-D weight (tile, tile): the outer product of `blend_profile` with itself, float32."""
    profile = blend_profile(tile, overlap, floor)
    return np.outer(profile, profile).astype(np.float32)


def coverage(size: int, tile: int, overlap: int) -> np.ndarray:
    """Sum of the tiles' `blend_profile`s along one axis (size,): the weight sum is the outer product of two."""
    profile = blend_profile(tile, overlap)
    total = np.zeros(size)
    for start in tile_starts(size, tile, overlap):
        total[start : start + tile] += profile
    return total


def free_memory(device: torch.device) -> int:
    """Bytes a CUDA device can still give PyTorch: the driver's free memory plus PyTorch's cached, unused blocks."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether `nbytes` fit in FREE_SHARE of a CUDA device's free memory (anything else: yes)."""
    return device.type != "cuda" or nbytes <= FREE_SHARE * free_memory(device)


def pad_to_tile(frames: torch.Tensor, tile: int) -> torch.Tensor:
    """The scene zero-padded at the bottom and right to at least one tile (zero = the training mean, normalised)."""
    pad_h, pad_w = max(tile - frames.shape[-2], 0), max(tile - frames.shape[-1], 0)
    return frames if pad_h == pad_w == 0 else torch.nn.functional.pad(frames, (0, pad_w, 0, pad_h))


def forecast_tiled(
    forecast: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    tile: int,
    overlap: int,
    batch_size: int,
) -> torch.Tensor:
    """Apply `forecast` ((B, T, C, tile, tile) -> (B, N, C, tile, tile)) to a (T, C, H, W) scene tile by tile.

    Tiles are cut, forecast and blended on the device `frames` is on (a GPU: nothing crosses to the host),
    into one (N, C, H, W) float32 canvas there, which is returned. A scene smaller than a tile is
    zero-padded and cropped back. Same result as the plain blend in tests/support/tiling_reference.py, with one
    fused multiply-add per tile and the weight sum taken as the outer product of two `coverage`s.
    """
    _, channels, height, width = frames.shape
    scene = pad_to_tile(frames, tile)
    full_h, full_w = scene.shape[-2:]
    corners = [(y, x) for y in tile_starts(full_h, tile, overlap) for x in tile_starts(full_w, tile, overlap)]
    weight = torch.from_numpy(blend_window(tile, overlap)).to(scene.device)
    total: torch.Tensor | None = None
    with Steps("tiles forecast", len(corners)) as steps:
        for first in range(0, len(corners), batch_size):
            batch = corners[first : first + batch_size]
            tiles = torch.stack([scene[:, :, y : y + tile, x : x + tile] for y, x in batch])
            out = forecast(tiles).to(scene.device, torch.float32)
            if total is None:
                total = torch.zeros(out.shape[1], channels, full_h, full_w, device=scene.device)
            for (y, x), piece in zip(batch, out):
                total[:, :, y : y + tile, x : x + tile].addcmul_(piece, weight)
            steps.advance(len(batch))
    assert total is not None
    rows = torch.from_numpy(coverage(full_h, tile, overlap)).to(scene.device, torch.float32)
    cols = torch.from_numpy(coverage(full_w, tile, overlap)).to(scene.device, torch.float32)
    total /= rows[:, None]  # two in-place divisions: no (H, W) weight-sum array
    total /= cols
    return total[:, :, :height, :width]
