"""Readers: a GeoTIFF series, NetCDF or Zarr -> one lazy (time, band, y, x) float32 DataArray.

Nodata becomes NaN, scale/offset are applied, CRS and affine transform are attached with rioxarray,
frames are sorted by time. Every problem is a VmrnnError naming the file.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cftime
import dask
import dask.array
import numpy as np
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.timeparse import time_from_format, time_from_name, time_from_tiff_tag

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf"}
_X_NAMES = ("x", "lon", "longitude")
_Y_NAMES = ("y", "lat", "latitude")
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Grid:
    """What must agree across the files of a series."""

    crs: CRS | None
    transform: Affine
    height: int
    width: int
    count: int


def describe_inputs(paths: list[str]) -> str:
    """The inputs as named in an error line: the first one, and how many more."""
    return paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


def expand_inputs(paths: list[str]) -> list[Path]:
    """Expand shell-style globs (quoted ones too, as cron jobs pass them) and check every path exists."""
    files: list[Path] = []
    for text in paths:
        if not os.path.exists(text) and glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise VmrnnError(f"{text}: no file matches this pattern")
            files.extend(Path(m) for m in matches)
        elif not os.path.exists(text):
            raise VmrnnError(f"{text}: no such file or directory")
        else:
            files.append(Path(text))
    if not files:
        raise VmrnnError("no input given")
    return files


def input_kind(path: Path) -> str:
    """'netcdf', 'zarr' or 'geotiff' (anything else GDAL reads) from the path."""
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return "netcdf"
    if path.is_dir() and not any((path / marker).exists() for marker in (".zgroup", ".zarray", "zarr.json")):
        raise VmrnnError(f"{path}: is a directory but not a Zarr store; for a GeoTIFF series pass '{path}/*.tif'")
    if path.suffix.lower() == ".zarr" or path.is_dir():
        return "zarr"
    return "geotiff"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_rasters(
    paths: list[str],
    var: str | None = None,
    time_format: str | None = None,
    bands: list[int] | None = None,
) -> xr.DataArray:
    """Read a GeoTIFF series, NetCDF file(s) or Zarr store(s) into one lazy (time, band, y, x) DataArray."""
    files = expand_inputs(paths)
    kinds = {input_kind(f) for f in files}
    if len(kinds) > 1:
        raise VmrnnError(f"{files[0]}: inputs mix {' and '.join(sorted(kinds))}; give one kind at a time")
    kind = kinds.pop()
    if kind == "geotiff":
        da = _read_geotiff_series(files, time_format)
    else:
        da = _combine_datasets([_read_dataset(f, var, kind) for f in files], files)
    if bands:
        da = _select_bands(da, bands, files[0])
    return da


def _select_bands(da: xr.DataArray, bands: list[int], source: Path) -> xr.DataArray:
    count = da.sizes["band"]
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise VmrnnError(f"{source}: has {count} band(s); --bands {bad[0]} is out of range (bands count from 1)")
    names = [da.attrs["band_names"][b - 1] for b in bands]
    da = da.isel(band=[b - 1 for b in bands])
    da.attrs["band_names"] = names
    return da


# ---- GeoTIFF series -------------------------------------------------------------------------


def _open_raster(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        reason = _first_line(err).replace(f"{path}: ", "").replace(f"{path.name}: ", "")
        if os.path.isfile(path) and not os.access(path, os.R_OK):
            reason = "permission denied"
        raise VmrnnError(f"{path}: not a readable raster ({reason})") from None


def _check_complete(src: rasterio.DatasetReader, path: Path) -> None:
    """Refuse a truncated TIFF whose last data block lies beyond the end of the file."""
    if src.driver != "GTiff":
        return
    block_h, block_w = src.block_shapes[0]
    key = f"{math.ceil(src.width / block_w) - 1}_{math.ceil(src.height / block_h) - 1}"
    size = os.path.getsize(path)
    for band in {1, src.count}:
        offset = src.get_tag_item(f"BLOCK_OFFSET_{key}", "TIFF", bidx=band)
        length = src.get_tag_item(f"BLOCK_SIZE_{key}", "TIFF", bidx=band)
        if offset and length and int(offset) + int(length) > size:
            raise VmrnnError(f"{path}: truncated file (data ends at byte {size}, expected {int(offset) + int(length)})")


def _file_time(src: rasterio.DatasetReader, path: Path, time_format: str | None) -> datetime:
    if time_format:
        when = time_from_format(path.name, time_format)
        if when is None:
            raise VmrnnError(f"{path}: file name does not match --time-format {time_format!r}")
        return when
    when = time_from_name(path.name) or time_from_tiff_tag(src.tags().get("TIFFTAG_DATETIME"))
    if when is None:
        raise VmrnnError(
            f"{path}: no date in the file name and no TIFFTAG_DATETIME; name it like scene_2024-03-05.tif "
            "or pass --time-format (strftime, e.g. --time-format '%d%m%Y')"
        )
    return when


@dataclass(frozen=True)
class _Frame:
    path: Path
    time: datetime
    grid: Grid
    dtype: str
    band_names: list[str]
    nodata: float | None


def _frame_header(path: Path, time_format: str | None) -> _Frame:
    with _open_raster(path) as src:
        _check_complete(src, path)
        grid = Grid(src.crs, src.transform, src.height, src.width, src.count)
        names = [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        return _Frame(path, _file_time(src, path, time_format), grid, src.dtypes[0], names, src.nodata)


def _read_window(path: Path, rows: tuple[int, int]) -> np.ndarray:
    """Read rows [start, stop) of every band as float32, nodata -> NaN, scale/offset applied.

    Plain nodata values are masked by comparison; internal masks and alpha bands go through GDAL's mask.
    """
    try:
        with rasterio.open(path) as src:
            window = Window(0, rows[0], src.width, rows[1] - rows[0])
            if any(MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in src.mask_flag_enums):
                data = src.read(window=window, masked=True).astype(np.float32).filled(np.nan)
            else:
                data = src.read(window=window, out_dtype=np.float32)
                for band, nodata in zip(data, src.nodatavals):
                    if nodata is not None and not np.isnan(nodata):
                        band[band == np.float32(nodata)] = np.nan
            scales = np.asarray(src.scales, dtype=np.float32)[:, None, None]
            offsets = np.asarray(src.offsets, dtype=np.float32)[:, None, None]
    except rasterio.errors.RasterioError as err:
        raise VmrnnError(f"{path}: unreadable data ({_first_line(err)})") from None
    if (scales != 1).any() or (offsets != 0).any():
        data = data * scales + offsets
    return data


def _lazy_frame(frame: _Frame) -> dask.array.Array:
    grid = frame.grid
    row_bytes = 4 * grid.count * grid.width
    step = max(1, min(grid.height, _CHUNK_BYTES // row_bytes))
    blocks = []
    for start in range(0, grid.height, step):
        rows = (start, min(start + step, grid.height))
        task = dask.delayed(_read_window, pure=True)(frame.path, rows)
        shape = (grid.count, rows[1] - rows[0], grid.width)
        blocks.append(dask.array.from_delayed(task, shape=shape, dtype=np.float32))
    return dask.array.concatenate(blocks, axis=1)


def _grid_difference(grid: Grid, reference: Grid) -> str | None:
    if grid.crs != reference.crs:
        return f"CRS {grid.crs} differs from {reference.crs}"
    if (grid.height, grid.width) != (reference.height, reference.width):
        return f"shape {grid.height}x{grid.width} differs from {reference.height}x{reference.width}"
    if grid.count != reference.count:
        return f"band count {grid.count} differs from {reference.count}"
    if not grid.transform.almost_equals(reference.transform, precision=1e-9 * max(1.0, abs(reference.transform.c))):
        return f"transform {tuple(grid.transform)[:6]} differs from {tuple(reference.transform)[:6]}"
    return None


def _sorted_by_time(times: list, files: list[Path]) -> np.ndarray:
    """Indices that sort `times`; refuses duplicates, naming both files."""
    order = np.argsort(np.array(times, dtype=object), kind="stable")
    for a, b in zip(order[:-1], order[1:]):
        if times[a] == times[b] and files[a] == files[b]:
            raise VmrnnError(f"{files[b]}: duplicate time {times[b]}")
        if times[a] == times[b]:
            raise VmrnnError(f"{files[b]}: time {times[b]} duplicates {files[a]}")
    return order


def _read_geotiff_series(files: list[Path], time_format: str | None) -> xr.DataArray:
    with rasterio.Env():
        frames = [_frame_header(f, time_format) for f in files]
    first = frames[0]
    for frame in frames[1:]:
        difference = _grid_difference(frame.grid, first.grid)
        if difference:
            raise VmrnnError(f"{frame.path}: {difference} in {first.path}")
    if first.grid.crs is None:
        raise VmrnnError(f"{first.path}: has no CRS; assign one first (e.g. gdal_edit.py -a_srs EPSG:32633)")
    order = _sorted_by_time([f.time for f in frames], [f.path for f in frames])
    frames = [frames[i] for i in order]
    data = dask.array.stack([_lazy_frame(f) for f in frames])
    grid = first.grid
    xs, ys = _pixel_centres(grid.transform, grid.height, grid.width, first.path)
    da = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array([f.time for f in frames], dtype="datetime64[ns]"),
            "band": np.arange(1, grid.count + 1),
            "y": ys,
            "x": xs,
        },
        name="data",
        attrs={"band_names": first.band_names, "source_nodata": first.nodata},
    )
    return _georeference(da, grid.crs, grid.transform)


def _pixel_centres(transform: Affine, height: int, width: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if transform.b != 0 or transform.d != 0:
        raise VmrnnError(f"{path}: rotated or sheared grids are not supported; warp to a north-up grid (gdalwarp)")
    xs = transform.c + transform.a * (np.arange(width) + 0.5)
    ys = transform.f + transform.e * (np.arange(height) + 0.5)
    return xs, ys


def _georeference(da: xr.DataArray, crs: CRS, transform: Affine) -> xr.DataArray:
    da = da.rio.write_crs(crs)
    return da.rio.write_transform(transform)


# ---- NetCDF / Zarr --------------------------------------------------------------------------


def _open_dataset(path: Path, kind: str) -> xr.Dataset:
    try:
        if kind == "zarr":
            return xr.open_zarr(path, decode_coords="all", chunks={})
        return xr.open_dataset(path, decode_coords="all", chunks={"time": 1}, engine="netcdf4")
    except Exception as err:  # noqa: BLE001 - any failure to open is one line naming the file
        what = "Zarr store" if kind == "zarr" else "NetCDF file"
        raise VmrnnError(f"{path}: not a readable {what} ({_first_line(err)})") from None


def _pick_variable(ds: xr.Dataset, var: str | None, path: Path) -> xr.DataArray:
    if var is not None:
        if var not in ds.data_vars:
            raise VmrnnError(f"{path}: no variable {var!r}; it has {', '.join(map(str, ds.data_vars)) or 'none'}")
        return ds[var]
    candidates = [name for name, v in ds.data_vars.items() if v.ndim in (3, 4)]
    if len(candidates) != 1:
        found = ", ".join(map(str, candidates)) or "none"
        raise VmrnnError(f"{path}: cannot tell which variable to read (3-D/4-D variables: {found}); pass --var NAME")
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


def _read_dataset(path: Path, var: str | None, kind: str) -> xr.DataArray:
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


def _combine_datasets(parts: list[xr.DataArray], files: list[Path]) -> xr.DataArray:
    first = parts[0]
    reference = _grid_of(first)
    for part, path in zip(parts[1:], files[1:]):
        difference = _grid_difference(_grid_of(part), reference)
        if difference:
            raise VmrnnError(f"{path}: {difference} in {files[0]}")
    times = [t for part in parts for t in part.time.values]
    owners = [path for part, path in zip(parts, files) for _ in range(part.sizes["time"])]
    da = xr.concat(parts, dim="time", join="override", combine_attrs="override") if len(parts) > 1 else first
    order = _sorted_by_time(times, owners)
    if (order != np.arange(len(order))).any():
        da = da.isel(time=order)
    return da


def _grid_of(da: xr.DataArray) -> Grid:
    return Grid(da.rio.crs, da.rio.transform(), da.sizes["y"], da.sizes["x"], da.sizes["band"])
