"""Roll the model out over batches of tiles or windows, and how many fit in a GPU's memory at once."""

from __future__ import annotations

import torch

from vmrnn_cli.forecast.tiling import free_memory

CPU_BATCH = 16  # tiles per forward pass on the CPU when no batch size is given
MAX_GPU_BATCH = 1024  # from ~256 tiles of 64 px on, an H100's rollout is compute-bound (benchmarks/RESULTS.md)
BATCH_SHARE = 0.5  # the share of a GPU's free memory one batch of tiles may take while it is forecast
PROBE_TILES = 4  # tiles of the rollout that measures the memory one tile takes


def batch_for_memory(per_tile: float, free: int) -> int:
    """Tiles per batch that fit in BATCH_SHARE of `free` bytes at `per_tile` bytes each, from 1 to MAX_GPU_BATCH."""
    return max(1, min(MAX_GPU_BATCH, int(BATCH_SHARE * free / max(per_tile, 1.0))))


def auto_batch_size(
    net: torch.nn.Module, tile_shape: tuple[int, ...], horizon: int, device: torch.device, reserve: int
) -> int:
    """Tiles per forward pass when none is given: CPU_BATCH on the CPU; on a GPU, as many as fit in BATCH_SHARE of
    its free memory less `reserve` bytes (allocated later), by the peak memory of a rollout of PROBE_TILES tiles
    of `tile_shape` (T, C, tile, tile)."""
    if device.type != "cuda":
        return CPU_BATCH
    probe = torch.zeros(PROBE_TILES, *tile_shape, device=device)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    rollout_on_device(net, probe, horizon, device)
    per_tile = (torch.cuda.max_memory_allocated(device) - before) / PROBE_TILES
    return batch_for_memory(per_tile, free_memory(device) - reserve)


def rollout_on_device(net: torch.nn.Module, frames: torch.Tensor, horizon: int, device: torch.device) -> torch.Tensor:
    """The next `horizon` frames after normalised context frames (B, T, C, H, W) (NaN read as the mean, 0).

    No gradients, bf16 autocast on CUDA; returns (B, horizon, C, H, W) float32 on `device`.
    """
    inputs = frames.to(device).nan_to_num()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = net(inputs, horizon)[:, -horizon:]
    return out.float()


def rollout(net: torch.nn.Module, frames: torch.Tensor, horizon: int, device: torch.device) -> torch.Tensor:
    """`rollout_on_device`, the result brought back to the CPU (for callers that score it with numpy)."""
    return rollout_on_device(net, frames, horizon, device).cpu()
