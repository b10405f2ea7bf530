"""`vmrnn evaluate`: scores per lead time against persistence and climatology."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.cli.flags import AllowResolutionChange, Device, Model, Quiet, Threads, apply_shared, deprecated, output
from vmrnn_cli.errors import OptionError
from vmrnn_cli.options import PARTS, EvaluateOptions

# the old `--json FILE` leaves FILE as an extra argument, refused below with a line saying what replaced it
CONTEXT_SETTINGS = {"allow_extra_args": True}


def command(
    ctx: typer.Context,
    cube: Annotated[
        Path,
        typer.Argument(
            help="Cube written by `vmrnn prepare` (.zarr) holding the windows to score.", show_default=False
        ),
    ],
    model: Model,
    part: Annotated[
        str,
        typer.Option(
            "--part", metavar="[" + "|".join(PARTS) + "]", help="Which part of the cube's time split to score."
        ),
    ] = EvaluateOptions.part,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon", show_default=False, help="Lead times to score (default: the cube's output frames; any >= 1)."
        ),
    ] = None,
    output: Annotated[Path | None, output("Write the scores as JSON to this file.")] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            show_default=False,
            help="Write the scores against lead time to this PNG, and context / truth / forecast of one window to "
            "<stem>_panel.png beside it.",
        ),
    ] = None,
    device: Device = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            show_default=False,
            help="Windows per forward pass (default: on a GPU as many as fit in half its free memory, up to 256; 16 on "
            "the CPU).",
        ),
    ] = None,
    allow_resolution_change: AllowResolutionChange = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace existing JSON/PNG outputs.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", metavar="", help="Print the scores as JSON on stdout instead of the paths written."),
    ] = False,
    split: Annotated[str | None, typer.Option("--split", hidden=True)] = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Score a model on every window of a part of a cube per lead time (MSE, MAE, RMSE, SSIM, PSNR), against persistence and climatology; table on stderr, paths written on stdout."""  # noqa: E501 - one line: typer shows the docstring's lines as they are
    apply_shared(threads, quiet)
    from vmrnn_cli.verify.evaluate import evaluate as run_evaluate
    from vmrnn_cli.verify.report import to_json

    if ctx.args:
        if as_json:
            raise OptionError(
                "json", "is a flag now (the scores as JSON on stdout); write them to a file with `output` FILE.json"
            )
        raise typer.BadParameter(f"unexpected extra argument {ctx.args[0]!r}")
    if split is not None:
        deprecated("evaluate --split", "--part")
        part = split
    options = EvaluateOptions(
        part=part,
        horizon=horizon,
        device=device,
        batch_size=batch_size,
        allow_resolution_change=allow_resolution_change,
        overwrite=overwrite,
    )
    result, paths = run_evaluate(model, cube, options, json_path=output, plot_path=plot)
    if as_json:
        typer.echo(to_json(result), nl=False)
    else:
        for path in paths:
            typer.echo(str(path))
