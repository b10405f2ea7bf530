"""Training windows read lazily from a prepared cube and normalised on the fly (NaN kept for masking)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from vmrnn_cli.data.cube import Cube


class WindowDataset(Dataset):
    """The windows (t0, y0, x0) of one split part as (frames, band, window, window) float32 tensors: the input and
    output frames, or `frames` of them (then only the windows with that many frames inside the part)."""

    def __init__(self, cube: Cube, part: str, frames: int | None = None) -> None:
        # xarray's lazy backend array (no dask): reads just the Zarr chunks of a window, 5x faster per sample
        self.array = xr.open_zarr(cube.path, chunks=None)["data"].variable
        self.frames = frames or cube.input_frames + cube.output_frames
        windows = np.asarray(cube.windows(part), dtype=np.int64).reshape(-1, 3)
        self.windows = windows[windows[:, 0] + self.frames <= cube.split[part][1]]
        self.size = cube.window
        self.mean = np.asarray(cube.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(cube.std, dtype=np.float32).reshape(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        t0, y0, x0 = (int(v) for v in self.windows[index])
        block = self.array[t0 : t0 + self.frames, :, y0 : y0 + self.size, x0 : x0 + self.size]
        block = np.asarray(block.values, dtype=np.float32)
        return torch.from_numpy((block - self.mean) / self.std)
