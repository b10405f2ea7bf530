"""The NetCDF and Zarr reader: one variable, CF time decoded (any calendar), grid_mapping or plain lat/lon."""

from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
from rasterio.crs import CRS

from vmrnn_cli.data.grid import Grid
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.inputs import first_line, sorted_by_time

_X_NAMES = ("x", "lon", "longitude")
_Y_NAMES = ("y", "lat", "latitude")


def _open_dataset(path: Path, kind: str) -> xr.Dataset:
    try:
        if kind == "zarr":
            return xr.open_zarr(path, decode_coords="all", chunks={})
        return xr.open_dataset(path, decode_coords="all", chunks={"time": 1}, engine="netcdf4")
    except Exception as err:
        what = "Zarr store" if kind == "zarr" else "NetCDF file"
        raise VmrnnError(f"{path}: not a readable {what} ({first_line(err)})") from None


def _pick_variable(ds: xr.Dataset, var: str | None, path: Path) -> xr.DataArray:
    if var is not None:
        if var not in ds.data_vars:
            raise VmrnnError(f"{path}: no variable {var!r}; it has {', '.join(map(str, ds.data_vars)) or 'none'}")
        return ds[var]
    candidates = [name for name, v in ds.data_vars.items() if v.ndim in (3, 4)]
    if len(candidates) != 1:
        found = ", ".join(map(str, candidates)) or "none"
        raise VmrnnError(f"{path}: cannot tell which variable to read (3-D/4-D variables: {found}); pass `var` NAME")
    return ds[candidates[0]]


def _dim_named(da: xr.DataArray, names: tuple[str, ...], path: Path, what: str) -> str:
    for dim in da.dims:
        if str(dim).lower() in names:
            return str(dim)
    raise VmrnnError(f"{path}: variable {da.name!r} has no {what} dimension (looked for {', '.join(names)})")


def _time_dim(da: xr.DataArray, path: Path) -> str:
    """The dimension whose coordinate holds decoded times (datetime64, or cftime for other calendars)."""
    for dim in da.dims:
        values = da[dim].values if dim in da.coords else np.array([])
        if np.issubdtype(values.dtype, np.datetime64) or (values.size and isinstance(values[0], cftime.datetime)):
            return str(dim)
    raise VmrnnError(f"{path}: variable {da.name!r} has no decodable time dimension (CF units like 'days since ...')")


def _regular(values: np.ndarray, path: Path, dim: str) -> None:
    steps = np.diff(values)
    if len(steps) and not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise VmrnnError(f"{path}: coordinate {dim!r} is not evenly spaced; regrid to a regular grid first")


def read_dataset(path: Path, var: str | None, kind: str) -> xr.DataArray:
    """One variable of a NetCDF file or Zarr store as a lazy (time, band, y, x) float32 DataArray, north-up."""
    ds = _open_dataset(path, kind)
    da = _pick_variable(ds, var, path)
    tdim = _time_dim(da, path)
    ydim = _dim_named(da, _Y_NAMES, path, "y/lat")
    xdim = _dim_named(da, _X_NAMES, path, "x/lon")
    others = [d for d in da.dims if d not in (tdim, ydim, xdim)]
    if len(others) > 1:
        raise VmrnnError(f"{path}: variable {da.name!r} has extra dimensions {others}; select one level first")
    crs = da.rio.crs or ds.rio.crs
    geographic = ydim.lower() in ("lat", "latitude")
    if crs is None and not geographic:
        raise VmrnnError(f"{path}: variable {da.name!r} has no grid_mapping (CRS); add one (e.g. rioxarray write_crs)")
    crs = crs or CRS.from_epsg(4326)
    band_names = [_band_name(others[0], v) for v in da[others[0]].values] if others else [str(da.name)]
    source_nodata = da.encoding.get("_FillValue", da.encoding.get("missing_value"))
    da = da.expand_dims(band=1) if not others else da.rename({others[0]: "band"})
    da = da.rename({tdim: "time", ydim: "y", xdim: "x"}).transpose("time", "band", "y", "x")
    da = da.drop_vars([c for c in da.coords if c not in ("time", "y", "x")])
    if geographic and float(da.x.max()) > 180:
        da = da.assign_coords(x=((da.x + 180) % 360) - 180).sortby("x")
    if da.sizes["y"] > 1 and float(da.y[1]) > float(da.y[0]):
        da = da.isel(y=slice(None, None, -1))
    if da.sizes["x"] > 1 and float(da.x[1]) < float(da.x[0]):
        da = da.isel(x=slice(None, None, -1))
    _regular(da.x.values, path, xdim)
    _regular(da.y.values, path, ydim)
    da = da.astype(np.float32).assign_coords(band=np.arange(1, da.sizes["band"] + 1))
    da.name = str(da.name)
    da.attrs = {"band_names": band_names, "source_nodata": None if source_nodata is None else float(source_nodata)}
    da.encoding = {}
    da = da.rio.write_crs(crs)
    return da.rio.write_transform(da.rio.transform(recalc=True))


def _band_name(dim: str, value: object) -> str:
    """A band coordinate value as a name: strings as they are, numbers prefixed with the dimension."""
    return value if isinstance(value, str) else f"{dim}{value}"


def combine_datasets(parts: list[xr.DataArray], files: list[Path]) -> xr.DataArray:
    """The variables read from several files as one series sorted by time (same grid and bands in all)."""
    first = parts[0]
    reference = Grid.of(first)
    for part, path in zip(parts[1:], files[1:]):
        difference = Grid.of(part).difference(reference)
        if difference is None and part.sizes["band"] != first.sizes["band"]:
            difference = f"band count {part.sizes['band']} differs from {first.sizes['band']}"
        if difference:
            raise VmrnnError(f"{path}: {difference} in {files[0]}")
    times = [t for part in parts for t in part.time.values]
    owners = [path for part, path in zip(parts, files) for _ in range(part.sizes["time"])]
    da = xr.concat(parts, dim="time", join="override", combine_attrs="override") if len(parts) > 1 else first
    order = sorted_by_time(times, owners)
    if (order != np.arange(len(order))).any():
        da = da.isel(time=order)
    return da
