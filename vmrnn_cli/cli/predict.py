"""`vmrnn predict`: the next frames of a whole scene as georeferenced rasters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.cli.flags import (
    AllowResolutionChange,
    Bands,
    Device,
    Freq,
    Json,
    Model,
    Overwrite,
    Quiet,
    Regrid,
    Threads,
    TimeFormat,
    Var,
    apply_shared,
    output,
)
from vmrnn_cli.options import FORMATS, PredictOptions, ReadOptions, parse_int_list


def command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="The scene's latest frames: GeoTIFF files or globs, or a NetCDF file / Zarr store.", show_default=False
        ),
    ],
    model: Model,
    output: Annotated[Path, output("Output: a directory of COGs, a .nc file or a .zarr store.")],
    horizon: Annotated[
        int, typer.Option("--horizon", help="Frames to forecast (any number >= 1).", show_default=False)
    ],
    var: Var = None,
    time_format: TimeFormat = None,
    bands: Bands = None,
    regrid: Regrid = False,
    freq: Freq = None,
    context: Annotated[
        int | None,
        typer.Option(
            "--context", show_default=False, help="Latest frames fed to the model (default: the model's input frames)."
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            show_default=False,
            help="Overlap of neighbouring tiles in pixels (default: a quarter of the training window).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            show_default=False,
            help="Tiles per forward pass (default: on a GPU as many as fit in half its free memory, up to 1024; 16 on "
            "the CPU).",
        ),
    ] = None,
    device: Device = "auto",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="[" + "|".join(FORMATS) + "]",
            show_default=False,
            help="Output format (default: netcdf for .nc, zarr for .zarr, else a directory of COGs).",
        ),
    ] = None,
    allow_resolution_change: AllowResolutionChange = False,
    overwrite: Overwrite = False,
    as_json: Json = False,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Forecast the next --horizon frames of a whole scene as georeferenced rasters; prints the paths written."""
    apply_shared(threads, quiet)
    import json

    from vmrnn_cli.forecast.predict import predict as run_predict

    options = PredictOptions(
        horizon=horizon,
        read=ReadOptions(var, time_format, parse_int_list("bands", bands), regrid, freq),
        context=context,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        format=fmt,
        allow_resolution_change=allow_resolution_change,
        overwrite=overwrite,
    )
    summary = run_predict(model, inputs, output, options)
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        for path in summary.paths:
            typer.echo(str(path))
