"""Forecast writers: a directory of COG GeoTIFFs (one per lead time), a CF-1.8 NetCDF file, or a Zarr store.

`get_writer(fmt)` is the one place that maps a format name to its writer. Every writer takes the
forecast as a (time, band, y, x) float32 DataArray with NaN for nodata, rioxarray CRS/transform and band
names as the `band` coordinate, and writes atomically (built beside the target, renamed into place).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vmrnn_cli.errors import OptionError
from vmrnn_cli.io.cf import write_netcdf, write_zarr
from vmrnn_cli.io.cog import write_cog
from vmrnn_cli.options import FORMATS

Writer = Callable[..., list[Path]]


def infer_format(output: Path) -> str:
    """The output format an output path implies: `.nc` NetCDF, `.zarr` Zarr, no suffix a directory of COGs; any
    other suffix (a `.tif` meant as one file, say) is refused rather than silently made a directory."""
    suffix = Path(output).suffix.lower()
    formats = {".nc": "netcdf", ".zarr": "zarr", "": "cog"}
    if suffix not in formats:
        raise OptionError(
            "output",
            f"{output}: ends in {suffix}, which names no forecast format; give a directory "
            "(one COG per lead time), a .nc file or a .zarr store, or choose with `format`",
        )
    return formats[suffix]


def get_writer(fmt: str) -> Writer:
    """Map a format name (cog, netcdf, zarr) to its writer function."""
    writers: dict[str, Writer] = {"cog": write_cog, "netcdf": write_netcdf, "zarr": write_zarr}
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return writers[fmt]
