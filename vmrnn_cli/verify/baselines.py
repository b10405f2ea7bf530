"""Reference forecasts a forecaster would use anyway: persistence and climatology."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr


def persistence(context: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last observed value of each pixel: context (..., T, C, H, W) -> (..., horizon, C, H, W).

    A pixel that is NaN in the last context frame takes its latest finite earlier value (NaN if it
    was never observed in the context).
    """
    context = np.asarray(context)
    last = context[..., -1, :, :, :].copy()
    for t in range(context.shape[-4] - 2, -1, -1):
        missing = ~np.isfinite(last)
        if not missing.any():
            break
        last[missing] = context[..., t, :, :, :][missing]
    return np.repeat(last[..., None, :, :, :], horizon, axis=-4)


def climatology_mean(data: xr.DataArray, train: tuple[int, int]) -> np.ndarray:
    """Per-pixel, per-band mean over the training time steps [start, stop): (band, y, x), NaN where never observed."""
    start, stop = train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: "mean of empty slice"
        mean = data.isel(time=slice(start, stop)).mean("time", skipna=True)
        return np.asarray(mean.transpose("band", "y", "x").values, dtype=np.float32)


def climatology(mean: np.ndarray, horizon: int) -> np.ndarray:
    """The climatological forecast for every lead time: mean (..., C, H, W) -> (..., horizon, C, H, W)."""
    mean = np.asarray(mean)
    return np.repeat(mean[..., None, :, :, :], horizon, axis=-4)
