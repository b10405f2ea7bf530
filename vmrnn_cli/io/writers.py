"""Forecast writers: a directory of COG GeoTIFFs (one per lead time), a CF-1.8 NetCDF file, or a Zarr store.

`get_writer(fmt)` is the one place that maps a `--format` name to its writer. Every writer takes the
forecast as a (time, band, y, x) float32 DataArray with NaN for nodata, rioxarray CRS/transform and band
names as the `band` coordinate, and writes atomically (built beside the target, renamed into place).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio.io import MemoryFile

from vmrnn_cli import __version__
from vmrnn_cli.atomic import atomic_path

FORMATS = ("cog", "netcdf", "zarr")

Writer = Callable[..., list[Path]]


def infer_format(output: Path) -> str:
    """The output format an output path implies: `.nc` NetCDF, `.zarr` Zarr, anything else a COG directory."""
    suffix = Path(output).suffix.lower()
    return {".nc": "netcdf", ".zarr": "zarr"}.get(suffix, "cog")


def get_writer(fmt: str) -> Writer:
    """Map a format name (cog, netcdf, zarr) to its writer function."""
    writers: dict[str, Writer] = {"cog": write_cog, "netcdf": write_netcdf, "zarr": write_zarr}
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return writers[fmt]


def _timestamp(value: object) -> object:
    """A time value with strftime/isoformat: pandas Timestamp for datetime64, the cftime object itself otherwise."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(value)
    return value


def iso_time(value: object) -> str:
    """ISO 8601 text of a datetime64, pandas or cftime time value."""
    return _timestamp(value).isoformat()


def _calendar(value: object) -> str:
    """The CF calendar of a time value ("proleptic_gregorian" for numpy/pandas times)."""
    return getattr(value, "calendar", "") or "proleptic_gregorian"


def time_labels(times: np.ndarray) -> list[str]:
    """File-name labels for valid times: `2024-03-05` for whole days, `20240305T1230` (+seconds if any) otherwise."""
    stamps = [_timestamp(t) for t in times]
    if all((s.hour, s.minute, s.second) == (0, 0, 0) for s in stamps):
        fmt = "%Y-%m-%d"
    elif all(s.second == 0 for s in stamps):
        fmt = "%Y%m%dT%H%M"
    else:
        fmt = "%Y%m%dT%H%M%S"
    return [s.strftime(fmt) for s in stamps]


def write_cog(forecast: xr.DataArray, target: Path, nodata: float | None, reference_time: object,
              overwrite: bool = False) -> list[Path]:
    """Write one float32 Cloud-Optimized GeoTIFF per lead time into directory target, named by valid time.

    The files are written concurrently, each compressed by all CPUs: `rasterio.shutil.copy` (GDAL's
    CreateCopy) releases the GIL, where closing a dataset opened with driver="COG" does not.
    """
    target = Path(target)
    times = forecast["time"].values
    labels = time_labels(times)
    fill = np.float32(np.nan if nodata is None else nodata)
    _, bands, height, width = forecast.shape
    profile = {"width": width, "height": height, "count": bands, "dtype": "float32", "crs": forecast.rio.crs,
               "transform": forecast.rio.transform(), "nodata": fill}
    tags = {"TIFFTAG_SOFTWARE": f"vmrnn {__version__}", "FORECAST_REFERENCE_TIME": iso_time(reference_time)}
    names = [str(b) for b in forecast["band"].values]
    data = forecast.values
    with atomic_path(target, overwrite) as tmp:
        tmp.mkdir()
        with ThreadPoolExecutor(max_workers=min(len(labels), os.cpu_count() or 1)) as pool:
            jobs = [
                pool.submit(_write_one_cog, tmp / f"{label}.tif", data[lead - 1], profile, names, tags | {
                    "TIFFTAG_DATETIME": _timestamp(valid).strftime("%Y:%m:%d %H:%M:%S"),
                    "VALID_TIME": iso_time(valid), "LEAD_TIME_STEPS": str(lead), "CALENDAR": _calendar(valid)})
                for lead, (label, valid) in enumerate(zip(labels, times), start=1)
            ]
            for job in jobs:
                job.result()
    return [target / f"{label}.tif" for label in labels]


def _write_one_cog(path: Path, frame: np.ndarray, profile: dict, names: list[str], tags: dict[str, str]) -> None:
    """Write one (band, y, x) frame as a COG: staged as an in-memory GeoTIFF, then copied to path as a COG."""
    frame = np.where(np.isnan(frame), profile["nodata"], frame).astype(np.float32, copy=False)
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", **profile) as staging:
            staging.write(frame)
            for index, name in enumerate(names, start=1):
                staging.set_band_description(index, name)
            staging.update_tags(**tags)
        with memory.open() as staging:
            rasterio.shutil.copy(staging, path, driver="COG", compress="deflate", predictor=3, num_threads="ALL_CPUS")


def forecast_dataset(forecast: xr.DataArray, nodata: float | None, reference_time: object,
                     name: str = "forecast") -> tuple[xr.Dataset, dict]:
    """The forecast as a CF-1.8 Dataset (band, time, y, x) plus the encoding to write it with."""
    da = forecast.transpose("band", "time", "y", "x").astype(np.float32)
    names = np.array([str(b) for b in da["band"].values], dtype=object)
    da = da.assign_coords(band=np.arange(1, len(names) + 1, dtype=np.int32))
    da = da.rio.write_crs(forecast.rio.crs).rio.write_transform(forecast.rio.transform())
    da = da.rio.write_coordinate_system()
    ds = da.to_dataset(name=name)
    ds = ds.assign_coords(
        band_name=("band", names),
        forecast_reference_time=((), np.array(reference_time)),
        spatial_ref=ds["spatial_ref"].astype(np.int32).assign_attrs(ds["spatial_ref"].attrs),
    )
    ds[name].attrs = {"long_name": f"VMRNN forecast of {', '.join(names)}", "grid_mapping": "spatial_ref"}
    ds["band"].attrs = {"long_name": "band number"}
    ds["band_name"].attrs = {"long_name": "band name"}
    ds["time"].attrs = {"standard_name": "time", "long_name": "forecast valid time", "axis": "T"}
    ds["forecast_reference_time"].attrs = {"standard_name": "forecast_reference_time",
                                           "long_name": "time of the last context frame"}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs = {"Conventions": "CF-1.8", "title": "VMRNN forecast", "source": f"vmrnn {__version__}",
                "history": f"{created} written by vmrnn {__version__}"}
    time_encoding = {"units": f"seconds since {iso_time(reference_time)}", "calendar": _calendar(reference_time),
                     "dtype": "float64", "_FillValue": None}
    encoding = {
        name: {"dtype": "float32", "_FillValue": np.float32(np.nan if nodata is None else nodata)},
        "time": time_encoding,
        "forecast_reference_time": dict(time_encoding),
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
    }
    return ds, encoding


def write_netcdf(forecast: xr.DataArray, target: Path, nodata: float | None, reference_time: object,
                 overwrite: bool = False, name: str = "forecast") -> list[Path]:
    """Write the forecast as one CF-1.8 NetCDF-4 file (band, time, y, x) with grid_mapping spatial_ref."""
    ds, encoding = forecast_dataset(forecast, nodata, reference_time, name)
    with atomic_path(Path(target), overwrite) as tmp:
        ds.to_netcdf(tmp, encoding=encoding, format="NETCDF4")
    return [Path(target)]


def write_zarr(forecast: xr.DataArray, target: Path, nodata: float | None, reference_time: object,
               overwrite: bool = False, name: str = "forecast") -> list[Path]:
    """Write the forecast as a Zarr v2 store (GDAL reads v2) with the same layout as the NetCDF output."""
    ds, encoding = forecast_dataset(forecast, nodata, reference_time, name)
    with atomic_path(Path(target), overwrite) as tmp:
        ds.to_zarr(tmp, encoding=encoding, zarr_format=2, consolidated=True)
    return [Path(target)]
