"""`vmrnn demo`: the whole job on synthetic georeferenced data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.cli.flags import Device, Quiet, Threads, apply_shared, deprecated, output
from vmrnn_cli.errors import OptionError

# the old positional OUT_DIR arrives as an extra argument (deprecated for -o)
CONTEXT_SETTINGS = {"allow_extra_args": True}


def command(
    ctx: typer.Context,
    output: Annotated[Path | None, output("Directory for the demo's data, cube, run, forecast and evaluation.")] = None,
    device: Device = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace the demo's files in a non-empty output directory.")
    ] = False,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Run the whole job on synthetic georeferenced data: make rasters, prepare, train, predict, evaluate (a few minutes on CPU)."""  # noqa: E501
    apply_shared(threads, quiet)
    from vmrnn_cli.demo import demo as run_demo

    if len(ctx.args) > 1:
        raise typer.BadParameter(f"unexpected extra argument {ctx.args[1]!r}")
    if ctx.args:
        deprecated("demo OUT_DIR", "-o OUT_DIR")
        output = output or Path(ctx.args[0])
    if output is None:
        raise OptionError("output", "is required: the directory to write the demo to")
    for path in run_demo(output, device=device, overwrite=overwrite):
        typer.echo(str(path))
