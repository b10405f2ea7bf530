"""`vmrnn prepare`: rasters -> a chunked, georeferenced Zarr cube with split, statistics and window index.

The data are read once, out of core: each block of time chunks is streamed into the Zarr store in one
dask computation that also yields that block's train statistics and valid-pixel counts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr

from vmrnn_cli.data.cube import CUBE_VERSION
from vmrnn_cli.data.timeaxis import on_regular_axis
from vmrnn_cli.data.windows import MIN_VALID_FRACTION, box_sums, split_ranges, window_index
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.inputs import describe_inputs, expand_inputs
from vmrnn_cli.io.lock import locked
from vmrnn_cli.io.outputs import check_output
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.options import PrepareOptions
from vmrnn_cli.progress import Steps
from vmrnn_cli.runtime import dask_threads

# Dask works on blocks of several window-sized Zarr chunks (about this many pixels a side): fewer, larger tasks.
DASK_CHUNK_SIDE = 512


@dataclass(frozen=True)
class PrepareSummary:
    """What `prepare` made, for the one-line report on stderr."""

    output: Path
    shape: tuple[int, int, int, int]
    split: dict[str, tuple[int, int]]
    windows: dict[str, int]
    freq: str | None
    missing: int


def prepare(inputs: list[str], output: Path, options: PrepareOptions | None = None) -> PrepareSummary:
    """Read the inputs, check them, and write the cube to `output` atomically, holding the output's lock."""
    options = options or PrepareOptions()
    output = Path(output)
    check_output(output, options.overwrite, expand_inputs(inputs), directory=True)
    with locked(output):
        return _prepare(inputs, output, options)


def _prepare(inputs: list[str], output: Path, options: PrepareOptions) -> PrepareSummary:
    side, stride = options.window, options.step
    source = describe_inputs(inputs)
    da, freq, missing = on_regular_axis(read_rasters(inputs, options.read), options.read.freq, source)
    n_time, n_band, height, width = (da.sizes[d] for d in ("time", "band", "y", "x"))
    frames = options.input_frames + options.output_frames
    if n_time < frames:
        raise VmrnnError(f"{source}: {n_time} frames, fewer than `input_frames` + `output_frames` = {frames}")
    if min(height, width) < side:
        raise VmrnnError(
            f"{source}: the scene is {height} x {width} pixels, smaller than `window` {side}; "
            f"pass `window` {min(height, width)} or less"
        )
    ranges = split_ranges(n_time, options.split, frames, source)
    time_chunk = min(frames, n_time)
    block = side * max(1, DASK_CHUNK_SIDE // side)
    data = da.chunk({"time": time_chunk, "band": n_band, "y": block, "x": block})
    with atomic_path(output, options.overwrite, manifest=True) as tmp, dask_threads():
        _write_template(data, tmp, options.zarr_format, (time_chunk, n_band, side, side))
        stats, frame_counts = _stream(data, tmp, ranges["train"], side, stride)
        windows = window_index(frame_counts, ranges, frames, n_band * side**2, stride, source)
        empty = [i + 1 for i, n in enumerate(stats[0]) if n == 0]
        if empty:
            raise VmrnnError(f"{source}: band {empty[0]} has no valid pixel in the train part; drop it with `bands`")
        _write_index(tmp, stats, windows, ranges, da, options, freq)
    counts = {p: len(w) for p, w in windows.items()}
    return PrepareSummary(output, (n_time, n_band, height, width), ranges, counts, freq, missing)


def _write_template(data: xr.DataArray, path: Path, zarr_format: int, chunks: tuple[int, ...]) -> None:
    """Write metadata and coordinates; the data array itself is filled block by block later."""
    cube = data.rename("data").to_dataset()
    cube["data"].attrs = {
        "long_name": "data in physical units",
        "grid_mapping": "spatial_ref",  # CF: the CRS for xarray/rioxarray/netCDF tools
        "_CRS": {"wkt": data.rio.crs.to_wkt()},  # GDAL's Zarr convention: the CRS for GDAL and QGIS
    }
    cube["data"].encoding = {}
    encoding = {"data": {"chunks": chunks, "dtype": "float32", "_FillValue": np.nan}}
    cube.to_zarr(path, mode="w", compute=False, zarr_format=zarr_format, encoding=encoding, consolidated=False)


def _stream(
    data: xr.DataArray, path: Path, train: tuple[int, int], side: int, stride: int
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Write the data block by block; return train (count, mean, M2) per band and valid counts per frame and window.

    Each block is one dask computation whose chunks feed both the Zarr write and `_summarise`, so every
    input chunk is read once.
    """
    n_time, n_band, height, width = data.shape
    cell = math.gcd(side, stride)
    time_chunk = data.data.chunksize[0]
    y_offsets = np.cumsum((0,) + data.chunks[2][:-1]) // cell
    x_offsets = np.cumsum((0,) + data.chunks[3][:-1]) // cell
    moments = (np.zeros(n_band), np.zeros(n_band), np.zeros(n_band))
    frame_counts = []
    with Steps("frames prepared", n_time) as steps:
        for start in range(0, n_time, time_chunk):
            stop = min(start + time_chunk, n_time)
            block = data.isel(time=slice(start, stop))
            write = (
                block.drop_vars([c for c in block.coords if c != "time"])
                .rename("data")
                .to_dataset()
                .to_zarr(path, region={"time": slice(start, stop)}, compute=False, consolidated=False)
            )
            rows = (max(start, train[0]) - start, max(min(stop, train[1]) - start, 0))
            chunks = block.data.to_delayed(optimize_graph=False)[0, 0]
            summaries = [[dask.delayed(_summarise)(chunk, rows, cell) for chunk in row] for row in chunks]
            _, summaries = dask.compute(write, summaries)
            cells = np.zeros((stop - start, height // cell, width // cell), dtype=np.int32)
            for i, row in enumerate(summaries):
                for j, (chunk_cells, *chunk_moments) in enumerate(row):
                    cy, cx = chunk_cells.shape[1:]
                    cells[:, y_offsets[i] : y_offsets[i] + cy, x_offsets[j] : x_offsets[j] + cx] = chunk_cells
                    moments = _merge_moments(*moments, *chunk_moments)
            frame_counts.append(box_sums(cells, side // cell, stride // cell))
            steps.advance(stop - start)
    return moments, np.concatenate(frame_counts)


def _summarise(
    chunk: np.ndarray, train_rows: tuple[int, int], cell: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk: valid values per (frame, cell x cell block), and per band the train rows' (count, mean, M2)."""
    valid = ~np.isnan(chunk)
    n_time, n_band, height, width = chunk.shape
    hc, wc = height // cell, width // cell
    cells = valid[:, :, : hc * cell, : wc * cell].reshape(n_time, n_band, hc, cell, wc, cell)
    cells = cells.sum(axis=(1, 3, 5), dtype=np.int32)
    train, train_valid = chunk[slice(*train_rows)], valid[slice(*train_rows)]
    count = train_valid.sum(axis=(0, 2, 3)).astype(np.float64)
    mean = np.where(train_valid, train, 0).sum(axis=(0, 2, 3), dtype=np.float64) / np.maximum(count, 1)
    deviation = np.where(train_valid, train - mean[None, :, None, None].astype(np.float32), 0).astype(np.float64)
    return cells, count, mean, (deviation**2).sum(axis=(0, 2, 3))


def _merge_moments(count, mean, m2, b_count, b_mean, b_m2):
    """Chan et al.'s parallel update of (count, mean, sum of squared deviations), per band."""
    total = count + b_count
    safe = np.where(total > 0, total, 1)
    delta = b_mean - mean
    return total, mean + delta * b_count / safe, m2 + b_m2 + delta**2 * count * b_count / safe


def _write_index(
    path: Path,
    stats: tuple[np.ndarray, np.ndarray, np.ndarray],
    windows: dict[str, np.ndarray],
    ranges: dict[str, tuple[int, int]],
    da: xr.DataArray,
    options: PrepareOptions,
    freq: str | None,
) -> None:
    """Add statistics and window index variables and the cube attributes, then consolidate metadata."""
    count, mean, m2 = stats
    std = np.sqrt(m2 / np.where(count > 0, count, 1))
    std = np.where(std > 0, std, 1.0)
    extra = xr.Dataset(
        {"mean": ("band", mean), "std": ("band", std)}
        | {f"windows_{p}": ((f"window_{p}", "corner"), w) for p, w in windows.items()}
    )
    extra["mean"].attrs["long_name"] = "per-band mean over the train part (NaN ignored)"
    extra["std"].attrs["long_name"] = "per-band standard deviation over the train part (NaN ignored; 1 if constant)"
    for part in windows:
        extra[f"windows_{part}"].attrs["long_name"] = f"(t0, y0, x0) of each {part} window (time and pixel indices)"
    extra.to_zarr(path, mode="a", zarr_format=options.zarr_format, consolidated=False)
    nodata = da.attrs.get("source_nodata")
    group = zarr.open_group(path, mode="r+", zarr_format=options.zarr_format)
    group.attrs.update(
        vmrnn_cube=CUBE_VERSION,
        input_frames=options.input_frames,
        output_frames=options.output_frames,
        patch_size=options.window,  # the window side, under its first name (cubes stay readable by older vmrnn)
        stride=options.step,
        time_step=freq,
        min_valid_fraction=MIN_VALID_FRACTION,
        split={part: list(r) for part, r in ranges.items()},
        band_names=list(da.attrs.get("band_names", [])),
        source_nodata=None if nodata is None or np.isnan(nodata) else float(nodata),
    )
    with warnings.catch_warnings():  # for v3 zarr warns that consolidation is outside the spec; xarray does it too
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(path, zarr_format=options.zarr_format)
