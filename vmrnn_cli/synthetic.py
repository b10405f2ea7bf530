"""Small, realistic, georeferenced raster time series for tests, examples and the demo.

A smooth seasonal field with moving, growing and fading Gaussian blobs and nodata holes, so that
a forecasting model has something learnable. Everything is deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import cftime
import numpy as np
import rasterio
import xarray as xr
from rasterio.transform import from_origin


def make_series_array(
    n_frames: int,
    height: int,
    width: int,
    bands: int = 1,
    seed: int = 0,
    n_blobs: int = 4,
    hole_fraction: float = 0.05,
    period: float = 23.0,
) -> np.ndarray:
    """Return a (time, band, y, x) float32 series in about [0, 1], with NaN holes (clouds)."""
    frames = iter_series_frames(n_frames, height, width, bands, seed, n_blobs, hole_fraction, period)
    return np.stack(list(frames)) if n_frames else np.empty((0, bands, height, width), np.float32)


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
    """Yield the frames of `make_series_array` one (band, y, x) array at a time, for series too big for memory."""
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
        driver="GTiff", height=height, width=width, count=bands, dtype=dtype, crs=crs,
        transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
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


def make_dataset(
    n_frames: int = 24,
    height: int = 36,
    width: int = 52,
    bands: int = 1,
    var: str = "ndvi",
    crs: str | None = None,
    calendar: str = "standard",
    start: str = "2024-01-01",
    step_days: float = 16,
    lat_descending: bool = True,
    lon_0_360: bool = False,
    west: float | None = None,
    north: float | None = None,
    resolution: float | None = None,
    seed: int = 0,
    n_blobs: int = 4,
    hole_fraction: float = 0.05,
    period: float = 23.0,
) -> xr.Dataset:
    """Build a CF-style dataset: lat/lon (EPSG:4326) when crs is None, else x/y with a grid_mapping.

    west/north/resolution default to 10E 46N 0.05 deg for lat/lon and to a UTM-like 30 m grid otherwise.

    Multi-band data gets a 4-D variable (time, band, y, x). Longitudes 0..360 are wrapped with
    modulo 360, so a grid west of Greenwich comes out with a seam, as in many global products.
    """
    defaults = (10.0, 46.0, 0.05) if crs is None else (500000.0, 5000000.0, 30.0)
    west, north, resolution = (d if v is None else v for v, d in zip((west, north, resolution), defaults))
    data = make_series_array(n_frames, height, width, bands, seed, n_blobs, hole_fraction, period)
    t0 = datetime.fromisoformat(start)
    times = [
        cftime.datetime(t0.year, t0.month, t0.day, calendar=calendar) + timedelta(days=step_days * i)
        for i in range(n_frames)
    ]
    if calendar in ("standard", "gregorian", "proleptic_gregorian"):
        times = np.array([np.datetime64(t.isoformat()) for t in times], dtype="datetime64[ns]")
    ydim, xdim = ("lat", "lon") if crs is None else ("y", "x")
    ys = north - (np.arange(height) + 0.5) * resolution
    xs = west + (np.arange(width) + 0.5) * resolution
    if lon_0_360 and crs is None:
        xs = xs % 360.0
    dims = ("time", "band", ydim, xdim) if bands > 1 else ("time", ydim, xdim)
    values = data if bands > 1 else data[:, 0]
    coords = {"time": times, ydim: ys, xdim: xs}
    if bands > 1:
        coords["band"] = np.arange(1, bands + 1)
    da = xr.DataArray(values, dims=dims, coords=coords, name=var, attrs={"long_name": var, "units": "1"})
    if crs is None:
        da[ydim].attrs.update(standard_name="latitude", units="degrees_north")
        da[xdim].attrs.update(standard_name="longitude", units="degrees_east")
    if lat_descending is False:
        da = da.isel({ydim: slice(None, None, -1)})
    if lon_0_360 and crs is None:
        da = da.sortby(xdim)
    ds = da.to_dataset()
    if crs is not None:
        import rioxarray  # noqa: F401 - registers the .rio accessor

        ds = ds.rio.write_crs(crs)
    ds.attrs["Conventions"] = "CF-1.8"
    return ds


def make_netcdf(path: str | Path, calendar: str = "noleap", **kwargs) -> Path:
    """Write `make_dataset(...)` to a NetCDF file (default: noleap calendar) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(calendar=calendar, **kwargs)
    encoding = {"time": {"units": "days since 2000-01-01", "calendar": calendar}}
    ds.to_netcdf(path, encoding=encoding)
    return path


def make_zarr(path: str | Path, calendar: str = "standard", zarr_format: int = 2, **kwargs) -> Path:
    """Write `make_dataset(...)` to a Zarr store and return its path."""
    path = Path(path)
    ds = make_dataset(calendar=calendar, **kwargs)
    encoding = {"time": {"units": "days since 2000-01-01", "calendar": calendar}}
    ds.to_zarr(path, zarr_format=zarr_format, encoding=encoding, consolidated=True)
    return path
