"""`vmrnn prepare`: rasters -> a normalised, chunked, georeferenced Zarr cube."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.cli.flags import (
    Bands,
    Freq,
    Overwrite,
    Quiet,
    Regrid,
    Threads,
    TimeFormat,
    Var,
    apply_shared,
    deprecated,
    output,
)
from vmrnn_cli.options import PrepareOptions, ReadOptions, parse_int_list, parse_split


def command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="GeoTIFF files or globs (quoted globs too), or NetCDF file(s), or Zarr store(s).", show_default=False
        ),
    ],
    output: Annotated[Path, output("Cube to write (a .zarr directory).")],
    var: Var = None,
    time_format: TimeFormat = None,
    bands: Bands = None,
    regrid: Regrid = False,
    freq: Freq = None,
    input_frames: Annotated[
        int, typer.Option("--input-frames", help="Frames the model sees.")
    ] = PrepareOptions.input_frames,
    output_frames: Annotated[
        int, typer.Option("--output-frames", help="Frames the model predicts in training.")
    ] = PrepareOptions.output_frames,
    window: Annotated[
        int, typer.Option("--window", help="Side of the square training windows, in pixels.")
    ] = PrepareOptions.window,
    stride: Annotated[
        int | None,
        typer.Option("--stride", show_default=False, help="Step between windows, in pixels (default: the window)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Train,val,test fractions of the time axis, in time order.")
    ] = ",".join(f"{v:g}" for v in PrepareOptions.split),
    zarr_format: Annotated[
        int, typer.Option("--zarr-format", help="Zarr format: 2 (GDAL/QGIS read it) or 3.")
    ] = PrepareOptions.zarr_format,
    overwrite: Overwrite = False,
    patch_size: Annotated[int | None, typer.Option("--patch-size", hidden=True)] = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Turn rasters into a normalised, chunked, georeferenced Zarr cube with a train/val/test window index."""
    apply_shared(threads, quiet)
    from vmrnn_cli.data.prepare import prepare as run_prepare

    if patch_size is not None:
        deprecated("prepare --patch-size", "--window")
        window = patch_size
    options = PrepareOptions(
        read=ReadOptions(var, time_format, parse_int_list("bands", bands), regrid, freq),
        input_frames=input_frames,
        output_frames=output_frames,
        window=window,
        stride=stride,
        split=parse_split(split),
        zarr_format=zarr_format,
        overwrite=overwrite,
    )
    summary = run_prepare(inputs, output, options)
    n_time, n_band, height, width = summary.shape
    counts = ", ".join(f"{part} {summary.windows[part]} (frames {a}-{b})" for part, (a, b) in summary.split.items())
    step = f", every {summary.freq} ({summary.missing} missing, filled as nodata)" if summary.freq else ""
    typer.echo(
        f"vmrnn prepare: {n_time} frames x {n_band} band(s) x {height} x {width} px{step}; windows: {counts}",
        err=True,
    )
    typer.echo(str(summary.output))
