"""Small, realistic, georeferenced GeoTIFF time series for the demo, examples and tests.

A smooth seasonal field with moving, growing and fading Gaussian blobs and nodata holes, so that
a forecasting model has something learnable. Everything is deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def iter_series_frames(
    n_frames: int,
    height: int,
    width: int,
    bands: int = 1,
    seed: int = 0,
    n_blobs: int = 4,
    hole_fraction: float = 0.05,
    period: float = 23.0,
) -> Iterator[np.ndarray]:
    """Yield a (band, y, x) float32 frame in about [0, 1] at a time, with NaN holes (clouds); deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    phase = 2 * np.pi * (0.4 * yy / max(height, 1) + 0.6 * xx / max(width, 1))
    gradient = 0.1 * yy / max(height, 1)
    scale = 0.12 * min(height, width)
    pos = rng.uniform([0, 0], [height, width], size=(n_blobs, 2))
    vel = rng.uniform(-1.5, 1.5, size=(n_blobs, 2))
    sigma0 = rng.uniform(0.15, 0.3, size=n_blobs) * scale + 1.0
    growth = rng.uniform(-0.02, 0.04, size=n_blobs)
    amp0 = rng.uniform(0.2, 0.4, size=n_blobs)
    fade = rng.uniform(-0.03, 0.03, size=n_blobs)
    for t in range(n_frames):
        field = 0.35 + gradient + 0.15 * np.sin(2 * np.pi * t / period + phase)
        for k in range(n_blobs):
            cy, cx = (pos[k] + vel[k] * t) % [height, width]
            sigma = sigma0[k] * max(0.3, 1 + growth[k] * t)
            amp = amp0[k] * max(0.0, 1 + fade[k] * t)
            field = field + amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        frame = np.empty((bands, height, width), dtype=np.float32)
        for b in range(bands):
            frame[b] = field * (1.0 - 0.15 * b) + 0.05 * b
        frame[:, _holes(rng, height, width, hole_fraction)] = np.nan
        yield frame


def _holes(rng: np.random.Generator, height: int, width: int, fraction: float) -> np.ndarray:
    """A boolean mask of a few round 'clouds' covering roughly `fraction` of the frame."""
    mask = np.zeros((height, width), dtype=bool)
    if fraction <= 0:
        return mask
    yy, xx = np.ogrid[:height, :width]
    while mask.mean() < fraction:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.03, 0.08) * min(height, width) + 1
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    return mask


def _dates(n_frames: int, start: str, step_days: float) -> list[datetime]:
    t0 = datetime.fromisoformat(start)
    return [t0 + timedelta(days=step_days * i) for i in range(n_frames)]


def make_geotiff_series(
    directory: str | Path,
    n_frames: int = 24,
    height: int = 48,
    width: int = 40,
    bands: int = 1,
    crs: str = "EPSG:32633",
    nodata: float = -9999,
    dtype: str = "float32",
    scale_factor: float = 1e-4,
    add_offset: float = 0.0,
    start: str = "2024-01-01",
    step_days: float = 16,
    name_format: str = "scene_%Y-%m-%d.tif",
    datetime_tag: bool = False,
    resolution: float = 30.0,
    origin: tuple[float, float] = (500000.0, 5000000.0),
    seed: int = 0,
    n_blobs: int = 4,
    hole_fraction: float = 0.05,
    period: float = 23.0,
) -> list[Path]:
    """Write one GeoTIFF per frame (name from `name_format`, strftime style) and return their paths.

    With dtype "int16" the values are stored as round((v - add_offset) / scale_factor) and the
    scale/offset are recorded in the file, as in many NDVI products; nodata stays a raw value.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = iter_series_frames(n_frames, height, width, bands, seed, n_blobs, hole_fraction, period)
    transform = from_origin(origin[0], origin[1], resolution, resolution)
    profile = dict(
        driver="GTiff",
        height=height,
        width=width,
        count=bands,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    if height < 256 or width < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    paths = []
    for frame, when in zip(frames, _dates(n_frames, start, step_days)):
        path = directory / when.strftime(name_format)
        if dtype == "float32":
            raw = np.where(np.isnan(frame), nodata, frame).astype(np.float32)
        else:
            raw = np.where(np.isnan(frame), nodata, np.round((frame - add_offset) / scale_factor)).astype(dtype)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(raw)
            if dtype != "float32":
                dst.scales = [scale_factor] * bands
                dst.offsets = [add_offset] * bands
            dst.descriptions = [f"band{b + 1}" for b in range(bands)]
            if datetime_tag:
                dst.update_tags(TIFFTAG_DATETIME=when.strftime("%Y:%m:%d %H:%M:%S"))
        paths.append(path)
    return paths
