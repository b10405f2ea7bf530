"""NetCDF files as published gridded products store them, written with netCDF4 itself (not xarray, not vmrnn).

Like NOAA OISST, GHRSST/MUR or a reanalysis: float32 lat/lon axes with CF attributes, the data packed in int16
with scale_factor/add_offset and a _FillValue for land, integer "days since 1981-01-01" times with a calendar,
deflated and chunked one time step per chunk, optionally a one-level `zlev` dimension (as OISST has).

The values come from `sst_field`, a smooth function of time and position, so a test can compare what it reads
with the field at the coordinates it read, whatever order the file stores the axes in.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import netCDF4
import numpy as np

SCALE = np.float32(0.01)
OFFSET = np.float32(15.0)
FILL = np.int16(-32768)
EPOCH = date(1981, 1, 1)


def regular_axis(first: float, step: float, count: int) -> np.ndarray:
    """`count` centres from `first` every `step` (computed in float64), stored as float32 as products do."""
    return (first + step * np.arange(count)).astype(np.float32)


def gaussian_latitudes(count: int) -> np.ndarray:
    """The latitudes of a Gaussian grid with `count` rows (94: T62, as NCEP reanalyses; 192: N96), north to
    south, float32: the arcsines of the Gauss-Legendre nodes."""
    nodes, _ = np.polynomial.legendre.leggauss(count)
    return np.degrees(np.arcsin(nodes))[::-1].astype(np.float32)


def sst_field(days: np.ndarray, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """A (time, lat, lon) float64 temperature-like field (about 0..30), NaN on "land"; periodic in longitude, so
    -180..180 and 0..360 longitudes give the same values."""
    t = np.asarray(days, dtype=np.float64)[:, None, None]
    lat = np.radians(np.asarray(lats, dtype=np.float64))[None, :, None]
    lon = np.radians(np.asarray(lons, dtype=np.float64))[None, None, :]
    field = 15 + 10 * np.cos(lat) + 3 * np.sin(3 * lon + 0.3 * t) + 2 * np.sin(5 * lat - 0.2 * t)
    land = np.sin(40 * lon) * np.cos(50 * lat) > 0.9
    return np.where(land, np.nan, field)


def day_numbers(start: str, n_frames: int, step_days: int = 1) -> np.ndarray:
    """Times of the frames as days since `EPOCH` (what the file stores)."""
    first = (date.fromisoformat(start) - EPOCH).days
    return first + step_days * np.arange(n_frames)


def packed(values: np.ndarray) -> np.ndarray:
    """Physical values as the file's int16 (FILL for NaN)."""
    codes = np.round((values - np.float64(OFFSET)) / np.float64(SCALE))
    return np.where(np.isnan(values), FILL, codes).astype(np.int16)


def unpacked(values: np.ndarray) -> np.ndarray:
    """What a CF reader makes of `packed(values)`: float32 offset + scale * code, NaN for FILL."""
    codes = packed(values)
    return np.where(codes == FILL, np.nan, OFFSET + SCALE * codes.astype(np.float32)).astype(np.float32)


def write_product(
    path: str | Path,
    lats: np.ndarray,
    lons: np.ndarray,
    n_frames: int = 10,
    start: str = "2024-01-01",
    step_days: int = 1,
    var: str = "sst",
    calendar: str = "gregorian",
    zlev: bool = False,
) -> Path:
    """Write `sst_field` on the float32 axes `lats` x `lons` (in the order given: ascending, descending, 0..360,
    across a seam) for `n_frames` times every `step_days` from `start`; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    days = day_numbers(start, n_frames, step_days)
    values = packed(sst_field(days, lats, lons))
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.Conventions = "CF-1.6"
        nc.title = "test product in the layout of a gridded SST analysis"
        nc.createDimension("time", None)
        if zlev:
            nc.createDimension("zlev", 1)
        nc.createDimension("lat", len(lats))
        nc.createDimension("lon", len(lons))
        time = nc.createVariable("time", "i4", ("time",))
        time.setncatts(
            {"units": f"days since {EPOCH.isoformat()}", "calendar": calendar, "standard_name": "time", "axis": "T"}
        )
        time[:] = days
        if zlev:
            level = nc.createVariable("zlev", "f4", ("zlev",))
            level.setncatts({"units": "meters", "long_name": "Sea surface height", "positive": "down", "axis": "Z"})
            level[:] = 0.0
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude", "long_name": "Latitude", "axis": "Y"})
        lat[:] = np.asarray(lats, dtype=np.float32)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude", "long_name": "Longitude", "axis": "X"})
        lon[:] = np.asarray(lons, dtype=np.float32)
        dims = ("time", "zlev", "lat", "lon") if zlev else ("time", "lat", "lon")
        chunks = (1, 1, len(lats), len(lons)) if zlev else (1, len(lats), len(lons))
        data = nc.createVariable(var, "i2", dims, fill_value=FILL, zlib=True, complevel=4, chunksizes=chunks)
        data.setncatts(
            {
                "long_name": "Daily sea surface temperature",
                "units": "degree_C",
                "scale_factor": SCALE,
                "add_offset": OFFSET,
            }
        )
        data.set_auto_maskandscale(False)  # write the int16 codes as they are
        data[:] = values[:, None] if zlev else values
    return path
