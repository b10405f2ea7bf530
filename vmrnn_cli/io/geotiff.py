"""The GeoTIFF-series reader: one file a frame, read lazily by row blocks, nodata as NaN, scale/offset applied."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dask
import dask.array
import numpy as np
import rasterio
import rasterio.errors
import tifffile
import xarray as xr
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from vmrnn_cli.data.grid import Grid
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.inputs import first_line, sorted_by_time
from vmrnn_cli.io.timeparse import time_from_format, time_from_name, time_from_tiff_tag

_CHUNK_BYTES = 64 * 2**20  # rows per dask block: about this many bytes of float32


def _open_raster(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        reason = first_line(err).replace(f"{path}: ", "").replace(f"{path.name}: ", "")
        if os.path.isfile(path) and not os.access(path, os.R_OK):
            reason = "permission denied"
        raise VmrnnError(f"{path}: not a readable raster ({reason})") from None


class _Problems(logging.Handler):
    """Collects what tifffile reports while it parses a file's structure."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _check_complete(src: rasterio.DatasetReader, path: Path) -> None:
    """Refuse a truncated or damaged TIFF: any tag or data block pointing past the end of the file. GDAL reads
    such files without a word (a tag cut off reads as absent: no CRS, no nodata), so tifffile parses the
    structure."""
    if src.driver != "GTiff":
        return
    problems, logger = _Problems(), logging.getLogger("tifffile")
    logger.addHandler(problems)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
    except (tifffile.TiffFileError, IndexError, ValueError) as err:
        problems.messages.append(str(err))
    finally:
        logger.removeHandler(problems)
    size = os.path.getsize(path)
    if problems.messages:
        raise VmrnnError(f"{path}: truncated or damaged TIFF ({problems.messages[0]})")
    if end > size:
        raise VmrnnError(f"{path}: truncated file (data ends at byte {size}, expected {end})")


def _file_time(src: rasterio.DatasetReader, path: Path, time_format: str | None) -> datetime:
    if time_format:
        when = time_from_format(path.name, time_format)
        if when is None:
            raise VmrnnError(f"{path}: file name does not match `time_format` {time_format!r}")
        return when
    when = time_from_name(path.name) or time_from_tiff_tag(src.tags().get("TIFFTAG_DATETIME"))
    if when is None:
        raise VmrnnError(
            f"{path}: no date in the file name and no TIFFTAG_DATETIME; name it like scene_2024-03-05.tif "
            "or pass `time_format` (strftime, e.g. '%d%m%Y')"
        )
    return when


@dataclass(frozen=True)
class _Frame:
    """One file of the series: its header, read without its data."""

    path: Path
    time: datetime
    grid: Grid
    count: int
    dtype: str
    band_names: list[str]
    nodata: float | None


def _frame_header(path: Path, time_format: str | None) -> _Frame:
    with _open_raster(path) as src:
        _check_complete(src, path)
        grid = Grid(src.crs, src.transform, src.height, src.width)
        names = [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        return _Frame(path, _file_time(src, path, time_format), grid, src.count, src.dtypes[0], names, src.nodata)


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
        raise VmrnnError(f"{path}: unreadable data ({first_line(err)})") from None
    if (scales != 1).any() or (offsets != 0).any():
        data = data * scales + offsets
    return data


def _lazy_frame(frame: _Frame) -> dask.array.Array:
    grid = frame.grid
    row_bytes = 4 * frame.count * grid.width
    step = max(1, min(grid.height, _CHUNK_BYTES // row_bytes))
    blocks = []
    for start in range(0, grid.height, step):
        rows = (start, min(start + step, grid.height))
        task = dask.delayed(_read_window, pure=True)(frame.path, rows)
        shape = (frame.count, rows[1] - rows[0], grid.width)
        blocks.append(dask.array.from_delayed(task, shape=shape, dtype=np.float32))
    return dask.array.concatenate(blocks, axis=1)


def read_geotiff_series(files: list[Path], time_format: str | None) -> xr.DataArray:
    """One lazy (time, band, y, x) float32 DataArray of a GeoTIFF series, one file a frame, sorted by time.

    Every file must share the first one's grid and band count; the time of each comes from its name
    (ISO dates, or `time_format`) or its TIFFTAG_DATETIME.
    """
    with rasterio.Env():
        frames = [_frame_header(f, time_format) for f in files]
    first = frames[0]
    for frame in frames[1:]:
        difference = frame.grid.difference(first.grid)
        if difference is None and frame.count != first.count:
            difference = f"band count {frame.count} differs from {first.count}"
        if difference:
            raise VmrnnError(f"{frame.path}: {difference} in {first.path}")
    if first.grid.crs is None:
        raise VmrnnError(f"{first.path}: has no CRS; assign one first (e.g. gdal_edit.py -a_srs EPSG:32633)")
    transform = first.grid.transform
    if transform.b != 0 or transform.d != 0:
        raise VmrnnError(
            f"{first.path}: rotated or sheared grids are not supported; warp to a north-up grid (gdalwarp)"
        )
    order = sorted_by_time([f.time for f in frames], [f.path for f in frames])
    frames = [frames[i] for i in order]
    ys, xs = first.grid.centres()
    da = xr.DataArray(
        dask.array.stack([_lazy_frame(f) for f in frames]),
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array([f.time for f in frames], dtype="datetime64[ns]"),
            "band": np.arange(1, first.count + 1),
            "y": ys,
            "x": xs,
        },
        name="data",
        attrs={"band_names": first.band_names, "source_nodata": first.nodata},
    )
    return first.grid.attach(da)
