"""Test series beyond GeoTIFFs: the synthetic frames as one array, and as CF NetCDF / Zarr datasets."""

from datetime import datetime, timedelta
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from vmrnn_cli.synthetic import iter_series_frames


def make_series_array(n_frames: int, height: int, width: int, bands: int = 1, **kwargs) -> np.ndarray:
    """The frames of `iter_series_frames` (same keywords) as one (time, band, y, x) float32 array."""
    frames = list(iter_series_frames(n_frames, height, width, bands, **kwargs))
    return np.stack(frames) if frames else np.empty((0, bands, height, width), np.float32)


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
    **frames,
) -> xr.Dataset:
    """Build a CF-style dataset: lat/lon (EPSG:4326) when crs is None, else x/y with a grid_mapping.

    west/north/resolution default to 10E 46N 0.05 deg for lat/lon and to a UTM-like 30 m grid otherwise.

    Multi-band data gets a 4-D variable (time, band, y, x). Longitudes 0..360 are wrapped with
    modulo 360, so a grid west of Greenwich comes out with a seam, as in many global products. Other keywords
    (seed, n_blobs, hole_fraction, period) go to `iter_series_frames`.
    """
    defaults = (10.0, 46.0, 0.05) if crs is None else (500000.0, 5000000.0, 30.0)
    west, north, resolution = (d if v is None else v for v, d in zip((west, north, resolution), defaults))
    data = make_series_array(n_frames, height, width, bands, **frames)
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


def write_geotiffs(
    directory: Path,
    frames: np.ndarray,
    crs: str,
    origin: tuple[float, float],
    resolution: float = 30.0,
    start: str = "2024-01-01",
    step_days: float = 16,
) -> list[Path]:
    """Write (time, band, y, x) frames (NaN = nodata) as one float32 GeoTIFF per frame, named by date."""
    import rasterio
    from rasterio.transform import from_origin

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": frames.shape[2],
        "width": frames.shape[3],
        "count": frames.shape[1],
        "dtype": "float32",
        "crs": crs,
        "transform": from_origin(*origin, resolution, resolution),
        "nodata": -9999.0,
    }
    paths = []
    for index, frame in enumerate(frames):
        when = datetime.fromisoformat(start) + timedelta(days=step_days * index)
        path = directory / f"scene_{when:%Y-%m-%d}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.where(np.isnan(frame), -9999.0, frame).astype(np.float32))
        paths.append(path)
    return paths
