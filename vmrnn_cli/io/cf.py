"""The CF writers: the forecast as one CF-1.8 NetCDF-4 file or a Zarr v2 store of the same layout.

Layout: one float32 data variable per band, named after the band (made a valid NetCDF/CF name, the original in
`long_name`), with dims (time, y, x), or (time, lat, lon) on a geographic CRS; `time` the valid times (units and
calendar), `forecast_reference_time` a scalar coordinate and `forecast_period` (the lead time) an auxiliary
coordinate along time; the CRS in the grid-mapping variable `spatial_ref` every data variable points to.
NetCDF variables are deflated and chunked one time step per chunk, Zarr arrays chunked the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from vmrnn_cli import __version__
from vmrnn_cli.data.timeaxis import calendar_of, iso_time
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.native_stderr import held_native_stderr

GRID_MAPPING = "spatial_ref"
MAX_CHUNK_SIDE = 2048  # a chunk is one time step of at most 2048 x 2048 pixels (16 MiB of float32)
DEFLATE_LEVEL = 4
_UNITS = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
# udunits spellings of the linear units of projected CRSs (others are written as a multiple of metres)
_LINEAR_UNITS = {"metre": "m", "meter": "m", "kilometre": "km", "foot": "ft", "US survey foot": "US_survey_foot"}


def variable_names(bands: list[str], taken: set[str] = frozenset()) -> list[str]:
    """Valid, unique CF variable names for the band names: letters, digits and underscores, starting with a
    letter ("band 1" -> band_1, "B04/red" -> B04_red, "865nm" -> band_865nm); unique regardless of case (a Zarr
    store on a case-insensitive file system) and different from the names in `taken`."""
    used = {t.lower() for t in taken}
    names = []
    for number, band in enumerate(bands, start=1):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", str(band)).strip("_")
        if not base:
            base = f"band_{number}"
        elif not base[0].isalpha():
            base = f"band_{base}"
        name, suffix = base, 2
        while name.lower() in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name.lower())
        names.append(name)
    return names


def _seconds(delta: object) -> float:
    if isinstance(delta, np.timedelta64):
        return float(delta / np.timedelta64(1, "s"))
    return delta.total_seconds()  # datetime.timedelta (cftime) or pandas Timedelta


def _time_unit(seconds: list[float]) -> tuple[str, int]:
    """The coarsest of days, hours, minutes, seconds in which every lead time is a whole number."""
    for unit, size in _UNITS:
        if all(float(s).is_integer() and int(s) % size == 0 for s in seconds):
            return unit, size
    return "seconds", 1


def _axis_attrs(crs: object, geographic: bool) -> tuple[dict, dict]:
    """CF attributes of the x (lon) and y (lat) coordinates."""
    if geographic:
        return (
            {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
            {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
        )
    x = {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "axis": "X"}
    y = {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "axis": "Y"}
    if crs is not None and crs.is_projected:
        name, factor = crs.linear_units, crs.linear_units_factor[-1]
        units = _LINEAR_UNITS.get(name, "m" if factor == 1 else f"{factor!r} m")
        x["units"] = y["units"] = units
    return x, y


def _chunks(height: int, width: int) -> tuple[int, int, int]:
    return 1, min(height, MAX_CHUNK_SIDE), min(width, MAX_CHUNK_SIDE)


def forecast_dataset(
    forecast: xr.DataArray, nodata: float | None, reference_time: object, name: str = "forecast"
) -> tuple[xr.Dataset, dict]:
    """The forecast as a CF-1.8 Dataset (one variable per band) plus the NetCDF-4 encoding to write it with.

    `forecast` is (time, band, y, x) with NaN for nodata; `nodata` becomes every variable's `_FillValue`
    (NaN when None); `reference_time` (the last context frame) the forecast_reference_time; `name` the title."""
    crs = forecast.rio.crs
    transform = forecast.rio.transform()
    da = forecast.transpose("time", "band", "y", "x").astype(np.float32)
    geographic = bool(crs is not None and crs.is_geographic)
    y_dim, x_dim = ("lat", "lon") if geographic else ("y", "x")
    if isinstance(reference_time, pd.Timestamp):
        reference_time = reference_time.to_datetime64()
    times = da["time"].values
    seconds = [_seconds(t - reference_time) for t in times]
    unit, unit_seconds = _time_unit(seconds)
    since = f"{unit} since {iso_time(reference_time)}"
    calendar = calendar_of(times[0]) if len(times) else calendar_of(reference_time)
    x_attrs, y_attrs = _axis_attrs(crs, geographic)
    coords = {
        "time": ("time", times, {"standard_name": "time", "long_name": "forecast valid time", "axis": "T"}),
        y_dim: (y_dim, da["y"].values.astype(np.float64), y_attrs),
        x_dim: (x_dim, da["x"].values.astype(np.float64), x_attrs),
        "forecast_reference_time": (
            (),
            np.array(reference_time),
            {"standard_name": "forecast_reference_time", "long_name": "time of the last context frame"},
        ),
        "forecast_period": (
            "time",
            np.array([np.timedelta64(round(s * 1e6), "us") for s in seconds], dtype="timedelta64[ns]"),
            {"standard_name": "forecast_period", "long_name": "lead time: valid time minus forecast_reference_time"},
        ),
    }
    bands = [str(b) for b in da["band"].values]
    names = variable_names(bands, taken={*coords, GRID_MAPPING})
    data_vars = {
        var: (("time", y_dim, x_dim), da.values[:, i], {"long_name": band})
        for i, (var, band) in enumerate(zip(names, bands))
    }
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds = xr.Dataset(
        data_vars,
        coords,
        attrs={
            "Conventions": "CF-1.8",
            "title": f"VMRNN {name}",
            "source": f"vmrnn {__version__}",
            "history": f"{created} written by vmrnn {__version__}",
        },
    )
    if crs is not None:
        ds = ds.rio.set_spatial_dims(x_dim=x_dim, y_dim=y_dim)
        ds = ds.rio.write_crs(crs, grid_mapping_name=GRID_MAPPING).rio.write_transform(transform)
        ds = ds.assign_coords({GRID_MAPPING: ds[GRID_MAPPING].astype(np.int32).assign_attrs(ds[GRID_MAPPING].attrs)})
    time_encoding = {"units": since, "calendar": calendar, "dtype": "float64", "_FillValue": None}
    fill = np.float32(np.nan if nodata is None else nodata)
    encoding = {
        var: {
            "dtype": "float32",
            "_FillValue": fill,
            "zlib": True,
            "complevel": DEFLATE_LEVEL,
            "shuffle": True,
            "chunksizes": _chunks(da.sizes["y"], da.sizes["x"]),
            **({"grid_mapping": GRID_MAPPING} if crs is not None else {}),
        }
        for var in names
    }
    encoding |= {
        "time": time_encoding,
        "forecast_reference_time": dict(time_encoding),
        "forecast_period": {"units": unit, "dtype": "float64" if unit_seconds == 1 else "int32", "_FillValue": None},
        x_dim: {"_FillValue": None},
        y_dim: {"_FillValue": None},
    }
    return ds, encoding


def _zarr_encoding(encoding: dict) -> dict:
    """The NetCDF-4 encoding for Zarr: the same chunks, the store's default compressor."""
    zarr_encoding = {}
    for var, enc in encoding.items():
        enc = {k: v for k, v in enc.items() if k not in ("zlib", "complevel", "shuffle", "chunksizes")}
        if "chunksizes" in encoding[var]:
            enc["chunks"] = encoding[var]["chunksizes"]
        zarr_encoding[var] = enc
    return zarr_encoding


def write_netcdf(
    forecast: xr.DataArray,
    target: Path,
    nodata: float | None,
    reference_time: object,
    overwrite: bool = False,
    name: str = "forecast",
) -> list[Path]:
    """Write the forecast as one CF-1.8 NetCDF-4 file: a deflated (time, y, x) variable per band."""
    ds, encoding = forecast_dataset(forecast, nodata, reference_time, name)
    with atomic_path(Path(target), overwrite) as tmp, held_native_stderr():  # HDF5 prints its error stack there
        ds.to_netcdf(tmp, encoding=encoding, format="NETCDF4")
    return [Path(target)]


def write_zarr(
    forecast: xr.DataArray,
    target: Path,
    nodata: float | None,
    reference_time: object,
    overwrite: bool = False,
    name: str = "forecast",
) -> list[Path]:
    """Write the forecast as a Zarr v2 store (GDAL reads v2) with the same layout as the NetCDF output."""
    ds, encoding = forecast_dataset(forecast, nodata, reference_time, name)
    with atomic_path(Path(target), overwrite, manifest=True) as tmp:
        ds.to_zarr(tmp, encoding=_zarr_encoding(encoding), zarr_format=2, consolidated=True)
    return [Path(target)]
