"""Readers: a GeoTIFF series, NetCDF or Zarr -> one lazy (time, band, y, x) float32 DataArray.

Nodata becomes NaN, scale/offset are applied, CRS and affine transform are attached with rioxarray,
frames are sorted by time. Every problem is a VmrnnError naming the file. `read_rasters` is the one
place that maps an input's kind to its reader.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.datasets import combine_datasets, read_dataset
from vmrnn_cli.io.geotiff import read_geotiff_series
from vmrnn_cli.io.inputs import expand_inputs, input_kind
from vmrnn_cli.options import ReadOptions


def read_rasters(paths: list[str], options: ReadOptions | None = None) -> xr.DataArray:
    """Read a GeoTIFF series, NetCDF file(s) or Zarr store(s) into one lazy (time, band, y, x) DataArray."""
    options = options or ReadOptions()
    files = expand_inputs(paths)
    kinds = {input_kind(f) for f in files}
    if len(kinds) > 1:
        raise VmrnnError(f"{files[0]}: inputs mix {' and '.join(sorted(kinds))}; give one kind at a time")
    kind = kinds.pop()
    if kind == "geotiff":
        da = read_geotiff_series(files, options.time_format)
    else:
        da = combine_datasets([read_dataset(f, options.var, kind, regrid=options.regrid) for f in files], files)
    if options.bands:
        da = _select_bands(da, list(options.bands), files[0])
    return da


def _select_bands(da: xr.DataArray, bands: list[int], source: Path) -> xr.DataArray:
    count = da.sizes["band"]
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise VmrnnError(f"{source}: has {count} band(s); `bands` {bad[0]} is out of range (bands count from 1)")
    names = [da.attrs["band_names"][b - 1] for b in bands]
    da = da.isel(band=[b - 1 for b in bands])
    da.attrs["band_names"] = names
    return da
