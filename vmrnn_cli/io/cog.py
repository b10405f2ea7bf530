"""The COG writer: one float32 Cloud-Optimized GeoTIFF per lead time, named by valid time, written concurrently."""

from __future__ import annotations

import errno
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
import xarray as xr
from rasterio.io import MemoryFile
from rasterio.windows import Window

from vmrnn_cli import __version__
from vmrnn_cli.data.timeaxis import calendar_of, iso_time, time_labels, timestamp
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.native_stderr import held_native_stderr
from vmrnn_cli.progress import Steps
from vmrnn_cli.runtime import threads


def write_cog(
    forecast: xr.DataArray, target: Path, nodata: float | None, reference_time: object, overwrite: bool = False
) -> list[Path]:
    """Write one float32 Cloud-Optimized GeoTIFF per lead time into directory target, named by valid time.

    The files are written concurrently within the thread budget (`threads()`: that many files at a time, each
    compressed by its share of it): `rasterio.shutil.copy` (GDAL's CreateCopy) releases the GIL, where closing a
    dataset opened with driver="COG" does not.
    """
    target = Path(target)
    times = forecast["time"].values
    labels = time_labels(times)
    fill = np.float32(np.nan if nodata is None else nodata)
    _, bands, height, width = forecast.shape
    profile = {
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "float32",
        "crs": forecast.rio.crs,
        "transform": forecast.rio.transform(),
        "nodata": fill,
    }
    tags = {"TIFFTAG_SOFTWARE": f"vmrnn {__version__}", "FORECAST_REFERENCE_TIME": iso_time(reference_time)}
    names = [str(b) for b in forecast["band"].values]
    data = forecast.values
    with atomic_path(target, overwrite, manifest=True) as tmp, held_native_stderr():
        tmp.mkdir()
        workers = min(len(labels), threads())
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            jobs = [
                pool.submit(
                    _write_one_cog,
                    tmp / f"{label}.tif",
                    data[lead - 1],
                    profile,
                    names,
                    tags | _valid_time_tags(valid, lead),
                    max(1, threads() // workers),
                )
                for lead, (label, valid) in enumerate(zip(labels, times), start=1)
            ]
            with Steps("forecast files written", len(jobs)) as steps:
                for job in jobs:
                    job.result()
                    steps.advance()
        finally:  # after a failure, Ctrl-C included, files not yet started are not written at all
            pool.shutdown(wait=True, cancel_futures=True)
    return [target / f"{label}.tif" for label in labels]


def _valid_time_tags(valid: object, lead: int) -> dict[str, str]:
    """The tags that tell one lead time's file apart: its valid time (also as TIFFTAG_DATETIME) and lead."""
    return {
        "TIFFTAG_DATETIME": timestamp(valid).strftime("%Y:%m:%d %H:%M:%S"),
        "VALID_TIME": iso_time(valid),
        "LEAD_TIME_STEPS": str(lead),
        "CALENDAR": calendar_of(valid),
    }


def _write_one_cog(
    path: Path, frame: np.ndarray, profile: dict, names: list[str], tags: dict[str, str], compressors: int
) -> None:
    """Write one (band, y, x) frame as a COG: staged as an in-memory GeoTIFF, then copied to path as a COG."""
    frame = np.where(np.isnan(frame), profile["nodata"], frame).astype(np.float32, copy=False)
    with rasterio.Env(), MemoryFile() as memory:  # the Env routes GDAL's messages from this thread to logging
        with memory.open(driver="GTiff", **profile) as staging:
            staging.write(frame)
            for index, name in enumerate(names, start=1):
                staging.set_band_description(index, name)
            staging.update_tags(**tags)
        with memory.open() as staging:
            rasterio.shutil.copy(staging, path, driver="COG", compress="deflate", predictor=3, num_threads=compressors)
        _read_back_last_block(path)


def _read_back_last_block(path: Path) -> None:
    """Read the file's last full-resolution block, written last: GDAL reports some failed writes (a file size
    limit) only as messages, and the block is then missing. OSError when it cannot be read."""
    try:
        with rasterio.open(path) as src:
            rows, cols = src.block_shapes[0]
            src.read(1, window=Window((src.width - 1) // cols * cols, (src.height - 1) // rows * rows, 1, 1))
    except rasterio.errors.RasterioError as err:
        raise OSError(errno.EIO, f"{path}: the file written cannot be read back ({err})") from None
