"""The CF writers: the forecast as one CF-1.8 NetCDF-4 file or a Zarr v2 store of the same layout."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from vmrnn_cli import __version__
from vmrnn_cli.data.timeaxis import calendar_of, iso_time
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.native_stderr import held_native_stderr


def forecast_dataset(
    forecast: xr.DataArray, nodata: float | None, reference_time: object, name: str = "forecast"
) -> tuple[xr.Dataset, dict]:
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
    ds["forecast_reference_time"].attrs = {
        "standard_name": "forecast_reference_time",
        "long_name": "time of the last context frame",
    }
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "VMRNN forecast",
        "source": f"vmrnn {__version__}",
        "history": f"{created} written by vmrnn {__version__}",
    }
    time_encoding = {
        "units": f"seconds since {iso_time(reference_time)}",
        "calendar": calendar_of(reference_time),
        "dtype": "float64",
        "_FillValue": None,
    }
    encoding = {
        name: {"dtype": "float32", "_FillValue": np.float32(np.nan if nodata is None else nodata)},
        "time": time_encoding,
        "forecast_reference_time": dict(time_encoding),
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
    }
    return ds, encoding


def write_netcdf(
    forecast: xr.DataArray,
    target: Path,
    nodata: float | None,
    reference_time: object,
    overwrite: bool = False,
    name: str = "forecast",
) -> list[Path]:
    """Write the forecast as one CF-1.8 NetCDF-4 file (band, time, y, x) with grid_mapping spatial_ref."""
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
        ds.to_zarr(tmp, encoding=encoding, zarr_format=2, consolidated=True)
    return [Path(target)]
