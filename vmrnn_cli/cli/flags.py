"""Options several commands share, defined once (as rasterio's `rio` does); defaults and validation live in
vmrnn_cli.options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.options import DEVICES

Overwrite = Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an existing output.")]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="[" + "|".join(DEVICES) + "]",
        help="auto: CUDA when there is a GPU (bf16 autocast), else CPU.",
    ),
]
Model = Annotated[
    Path, typer.Option("-m", "--model", show_default=False, help="Run directory (uses best.pt) or checkpoint file.")
]
Var = Annotated[str | None, typer.Option("--var", help="NetCDF/Zarr variable (default: the only 3-D/4-D one).")]
TimeFormat = Annotated[
    str | None,
    typer.Option(
        "--time-format",
        help="strftime pattern of the date in GeoTIFF names, e.g. '%d%m%Y' (default: ISO dates, then "
        "TIFFTAG_DATETIME).",
    ),
]
Bands = Annotated[
    str | None,
    typer.Option(
        "--bands", help="Bands to use, 1-based, comma-separated, e.g. 1,3 (default: all; predict: as given to prepare)."
    ),
]
AllowResolutionChange = Annotated[
    bool,
    typer.Option(
        "--allow-resolution-change",
        metavar="",
        help="Forecast a scene whose pixel size is more than 25% away from the training data's.",
    ),
]
Regrid = Annotated[
    bool,
    typer.Option(
        "--regrid", metavar="", help="Resample irregular lat/lon axes (e.g. Gaussian latitudes) onto a regular grid."
    ),
]
Freq = Annotated[
    str | None,
    typer.Option(
        "--freq",
        show_default=False,
        help="The series' time step as a pandas offset alias, e.g. 1D, 16D, 3h, MS (default: inferred).",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        show_default=False,
        help="Threads for torch, dask, GDAL and data loading together (default: $VMRNN_THREADS, else the CPUs this "
        "process may use).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress reports on stderr.")]
Json = Annotated[
    bool, typer.Option("--json", metavar="", help="Print a JSON summary on stdout instead of the paths written.")
]


def output(help_text: str) -> object:
    """The -o/--output option with a command's own help text."""
    return typer.Option("-o", "--output", help=help_text, show_default=False)


def deprecated(old: str, new: str) -> None:
    """Warn on stderr that an old spelling still works for this release only."""
    typer.echo(f"vmrnn: warning: {old} is deprecated and will be removed in the next release; use {new}", err=True)


def apply_shared(threads: int | None, quiet: bool) -> None:
    """Apply the options every command shares: the thread budget and the progress reports."""
    from vmrnn_cli.progress import set_quiet
    from vmrnn_cli.runtime import set_threads

    set_threads(threads)
    set_quiet(quiet)
