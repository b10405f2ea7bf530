"""The plain tile blend that `forecast_tiled` must equal (the test oracle)."""

from collections.abc import Callable

import torch

from vmrnn_cli.forecast.tiling import blend_window, pad_to_tile, tile_starts


def forecast_tiled_reference(
    forecast: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    tile: int,
    overlap: int,
    batch_size: int,
) -> torch.Tensor:
    """The plain blend `forecast_tiled` must equal: each tile's window added to a weight-sum canvas, on the CPU."""
    _, channels, height, width = frames.shape
    scene = pad_to_tile(frames, tile)
    full_h, full_w = scene.shape[-2:]
    corners = [(y, x) for y in tile_starts(full_h, tile, overlap) for x in tile_starts(full_w, tile, overlap)]
    weight = torch.from_numpy(blend_window(tile, overlap))
    total: torch.Tensor | None = None
    weight_sum = torch.zeros(full_h, full_w)
    for first in range(0, len(corners), batch_size):
        batch = corners[first : first + batch_size]
        tiles = torch.stack([scene[:, :, y : y + tile, x : x + tile] for y, x in batch])
        out = forecast(tiles).float().cpu()
        if total is None:
            total = torch.zeros(out.shape[1], channels, full_h, full_w)
        for (y, x), piece in zip(batch, out):
            total[:, :, y : y + tile, x : x + tile] += piece * weight
            weight_sum[y : y + tile, x : x + tile] += weight
    assert total is not None
    return (total / weight_sum)[:, :, :height, :width]
