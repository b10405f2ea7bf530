"""The `vmrnn` command: parse options, call one library function, report on stdout/stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from vmrnn_cli import __version__
from vmrnn_cli.errors import VmrnnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Forecast geospatial raster time series (GeoTIFF, NetCDF, Zarr) with VMRNN.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
) -> None:
    if debug:
        os.environ["VMRNN_DEBUG"] = "1"


def _not_implemented(name: str) -> None:
    typer.echo(f"vmrnn {name}: not implemented yet", err=True)
    raise typer.Exit(1)


@app.command()
def train() -> None:
    """Train VMRNN on a prepared cube (not implemented yet)."""
    _not_implemented("train")


@app.command()
def predict() -> None:
    """Forecast the next frames of a scene (not implemented yet)."""
    _not_implemented("predict")


@app.command()
def evaluate() -> None:
    """Score a trained model against truth and baselines (not implemented yet)."""
    _not_implemented("evaluate")


def main() -> None:
    """Entry point: run the app, turning any failure into one line on stderr and exit code 1."""
    try:
        app()
    except VmrnnError as err:
        if os.environ.get("VMRNN_DEBUG"):
            raise
        print(f"vmrnn: error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - one line for anything unexpected, traceback with --debug
        if os.environ.get("VMRNN_DEBUG"):
            raise
        print(f"vmrnn: error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
