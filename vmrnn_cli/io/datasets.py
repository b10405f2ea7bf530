"""The NetCDF and Zarr reader: one variable, CF time decoded (any calendar), grid_mapping or plain lat/lon.

Grids are taken as published products store them: float32-rounded axes become the regular grid fitted to them,
descending or ascending axes and 0..360 or -180..180 longitudes are all read; truly irregular axes (Gaussian
latitudes) are refused unless `regrid` asks to resample them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cftime
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from vmrnn_cli.data.grid import Grid
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.inputs import first_line, sorted_by_time

_X_NAMES = ("x", "lon", "longitude")
_Y_NAMES = ("y", "lat", "latitude")
AXIS_TOLERANCE = 1e-3  # how far (in steps) a coordinate may lie off the regular grid fitted to it
_ROUNDING = 1e-9  # deviations below this (in steps) are float64 rounding, not worth a line


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


def _contiguous_longitudes(da: xr.DataArray) -> xr.DataArray:
    """A geographic x axis made to run without a jump where it crosses its convention's seam (0 E for 0..360,
    180 E for -180..180): a regional grid stored across the seam, sorted or not, is rolled to start at one edge
    and its longitudes past the seam are shifted by 360. Grids that do not cross the seam keep their values, so
    0..360 longitudes stay 0..360."""
    values = da["x"].values.astype(np.float64)
    if len(values) < 3:
        return da
    order = np.arange(len(values))
    wrapped = (np.diff(values) + 180) % 360 - 180  # each step the short way round the globe
    if not ((wrapped > 0).all() or (wrapped < 0).all()):
        order = np.roll(order, -(int(np.argmax(np.abs(np.diff(values)))) + 1))  # start after the seam's jump
        wrapped = (np.diff(values[order]) + 180) % 360 - 180
        if not ((wrapped > 0).all() or (wrapped < 0).all()):
            return da  # not one contiguous run: the regularity check names the axis
    stored = values[order]
    turns = np.round((stored[0] + np.concatenate(([0.0], np.cumsum(wrapped))) - stored) / 360)
    if not turns.any() and (order == np.arange(len(order))).all():
        return da
    unwrapped = stored + 360 * turns
    if unwrapped.max() > 360 and unwrapped.min() >= 180:
        unwrapped -= 360  # e.g. 359.025 .. 361.575 -> -0.975 .. 1.575
    elif unwrapped.min() < -180 and unwrapped.max() <= 0:
        unwrapped += 360  # e.g. -190 .. -170 -> 170 .. 190
    return da.isel(x=order).assign_coords(x=unwrapped)


def _regular_axis(
    da: xr.DataArray, dim: str, name: str, path: Path, regrid: bool
) -> tuple[xr.DataArray, float, float, str | None]:
    """`da` with its `dim` coordinate replaced by the regular grid fitted to the centres (least squares of
    coordinate on index), that grid's first centre and step, and a note for the log (None when nothing to say).

    A centre may lie up to `AXIS_TOLERANCE` of a step off the fitted grid (or one float32 unit in the last place
    of the coordinates, whichever is larger: what storing them as float32 costs); a coordinate further off is
    refused, or with `regrid` resampled onto evenly spaced centres over the same span by linear interpolation.
    """
    values = da[dim].values.astype(np.float64)
    count = len(values)
    if count < 2:
        raise VmrnnError(f"{path}: coordinate {name!r} has {count} value(s); 2 or more are needed for a grid")
    direction = -1 if dim == "y" else 1  # north-up: y descending, x ascending (after the flips)
    if not (direction * np.diff(values) > 0).all():
        raise VmrnnError(f"{path}: coordinate {name!r} is not monotonic; sort the file along it first")
    index = np.arange(count, dtype=np.float64)
    centred = index - index.mean()
    step = float(centred @ values / (centred @ centred))
    start = float(values.mean() - step * index.mean())
    deviation = float(np.abs(values - (start + step * index)).max() / abs(step))
    tolerance = max(AXIS_TOLERANCE, float(np.spacing(np.float32(np.abs(values).max()))) / abs(step))
    note = None
    if deviation > tolerance:
        if not regrid:
            raise VmrnnError(
                f"{path}: coordinate {name!r} is not evenly spaced (a centre lies {deviation:.2g} of a step off "
                f"the regular grid fitted to it, more than {tolerance:.2g}); pass `regrid` to resample it onto a "
                "regular grid"
            )
        start, step = float(values[0]), float((values[-1] - values[0]) / (count - 1))
        da = da.interp({dim: start + step * index}, method="linear")
        note = (
            f"resampled {name!r} onto {count} evenly spaced values from {values[0]:.6g} to {values[-1]:.6g} by "
            "linear interpolation (xarray interp; a pixel next to nodata becomes nodata)"
        )
    elif deviation > _ROUNDING:
        note = (
            f"coordinate {name!r} deviates from a regular grid by up to {deviation:.2g} of a step; "
            f"read as the regular grid fitted to it (step {step:.9g})"
        )
    return da.assign_coords({dim: start + step * index}), start, step, note


def read_dataset(path: Path, var: str | None, kind: str, regrid: bool = False) -> xr.DataArray:
    """One variable of a NetCDF file or Zarr store as a lazy (time, band, y, x) float32 DataArray, north-up.

    Axes stored the other way round (latitude increasing, say) are reversed and named in attrs["flipped_axes"];
    geographic longitudes keep their convention (0..360 or -180..180) unless the grid crosses its seam
    (`_contiguous_longitudes`). Each axis becomes the regular grid fitted to its centres (`_regular_axis`;
    `regrid` resamples irregular ones) and the transform is that grid's, exactly. What is worth a line on stderr
    is left in attrs["grid_notes"] for `combine_datasets` to print once.
    """
    ds = _open_dataset(path, kind)
    da = _pick_variable(ds, var, path)
    tdim = _time_dim(da, path)
    ydim = _dim_named(da, _Y_NAMES, path, "y/lat")
    xdim = _dim_named(da, _X_NAMES, path, "x/lon")
    others = [d for d in da.dims if d not in (tdim, ydim, xdim)]
    if len(others) > 1:
        raise VmrnnError(f"{path}: variable {da.name!r} has extra dimensions {others}; select one level first")
    crs = da.rio.crs or ds.rio.crs
    if crs is None and ydim.lower() not in ("lat", "latitude"):
        raise VmrnnError(f"{path}: variable {da.name!r} has no grid_mapping (CRS); add one (e.g. rioxarray write_crs)")
    crs = crs or CRS.from_epsg(4326)
    band_names = [_band_name(others[0], v) for v in da[others[0]].values] if others else [str(da.name)]
    source_nodata = da.encoding.get("_FillValue", da.encoding.get("missing_value"))
    da = da.expand_dims(band=1) if not others else da.rename({others[0]: "band"})
    da = da.rename({tdim: "time", ydim: "y", xdim: "x"}).transpose("time", "band", "y", "x")
    da = da.drop_vars([c for c in da.coords if c not in ("time", "y", "x")])
    if crs.is_geographic:
        da = _contiguous_longitudes(da)
    flipped = []
    if da.sizes["y"] > 1 and float(da.y[-1]) > float(da.y[0]):
        da, flipped = da.isel(y=slice(None, None, -1)), [*flipped, "y"]
    if da.sizes["x"] > 1 and float(da.x[-1]) < float(da.x[0]):
        da, flipped = da.isel(x=slice(None, None, -1)), [*flipped, "x"]
    da, x0, dx, x_note = _regular_axis(da, "x", xdim, path, regrid)
    da, y0, dy, y_note = _regular_axis(da, "y", ydim, path, regrid)
    da = da.astype(np.float32).assign_coords(band=np.arange(1, da.sizes["band"] + 1))
    da.name = str(da.name)
    da.attrs = {
        "band_names": band_names,
        "source_nodata": None if source_nodata is None else float(source_nodata),
        "flipped_axes": flipped,
        "grid_notes": [note for note in (x_note, y_note) if note],
    }
    da.encoding = {}
    da = da.rio.write_crs(crs)
    return da.rio.write_transform(Affine(dx, 0.0, x0 - dx / 2, 0.0, dy, y0 - dy / 2))


def _band_name(dim: str, value: object) -> str:
    """A band coordinate value as a name: strings as they are, numbers prefixed with the dimension."""
    return value if isinstance(value, str) else f"{dim}{value}"


def combine_datasets(parts: list[xr.DataArray], files: list[Path]) -> xr.DataArray:
    """The variables read from several files as one series sorted by time (same grid and bands in all); the
    notes `read_dataset` left about their grids go to stderr, each once."""
    printed = set()
    for part, path in zip(parts, files):
        for note in part.attrs.pop("grid_notes", []):
            if note not in printed:  # files of one product share their axes: say it once
                printed.add(note)
                print(f"{path}: {note}", file=sys.stderr)
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
