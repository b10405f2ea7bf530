"""The `vmrnn` command: parse options, call one library function, report on stdout/stderr.

Options shared by several commands are defined once below; their defaults and validation live in
vmrnn_cli.options. Library errors name options by their Python name (`horizon`); `main` shows them as flags.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli import __version__
from vmrnn_cli.errors import OptionError, VmrnnError
from vmrnn_cli.options import (
    ARCHS,
    DEVICES,
    FORMATS,
    PARTS,
    EvaluateOptions,
    PredictOptions,
    PrepareOptions,
    ReadOptions,
    TrainConfig,
    parse_int_list,
    parse_split,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Forecast geospatial raster time series (GeoTIFF, NetCDF, Zarr) with VMRNN.",
)

# ---- options shared by several commands, defined once ----------------------------------------------------------

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
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
Json = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout instead of the paths written.")]


def _output(help_text: str) -> object:
    return typer.Option("-o", "--output", help=help_text, show_default=False)


def _deprecated(old: str, new: str) -> None:
    typer.echo(f"vmrnn: warning: {old} is deprecated and will be removed in the next release; use {new}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    if debug:
        os.environ["VMRNN_DEBUG"] = "1"


@app.command()
def prepare(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="GeoTIFF files or globs (quoted globs too), or NetCDF file(s), or Zarr store(s).", show_default=False
        ),
    ],
    output: Annotated[Path, _output("Cube to write (a .zarr directory).")],
    var: Var = None,
    time_format: TimeFormat = None,
    bands: Bands = None,
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
) -> None:
    """Turn rasters into a normalised, chunked, georeferenced Zarr cube with a train/val/test window index."""
    from vmrnn_cli.data.prepare import prepare as run_prepare

    if patch_size is not None:
        _deprecated("prepare --patch-size", "--window")
        window = patch_size
    options = PrepareOptions(
        read=ReadOptions(var, time_format, parse_int_list("bands", bands)),
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
    typer.echo(
        f"vmrnn prepare: {n_time} frames x {n_band} band(s) x {height} x {width} px; windows: {counts}", err=True
    )
    typer.echo(str(summary.output))


@app.command()
def train(
    ctx: typer.Context,
    cube: Annotated[Path, typer.Argument(help="Cube written by `vmrnn prepare` (.zarr).", show_default=False)],
    output: Annotated[Path, _output("Run directory (checkpoints best.pt/last.pt, metrics.csv, config.toml).")],
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            metavar="[" + "|".join(ARCHS) + "]",
            help="VMRNN-B (one cell stack) or VMRNN-D (down/up-sampling).",
        ),
    ] = TrainConfig.arch,
    embed_dim: Annotated[int, typer.Option("--embed-dim", help="Channels per token.")] = TrainConfig.embed_dim,
    depths: Annotated[
        str | None,
        typer.Option(
            "--depths",
            show_default=False,
            help="Blocks per cell stack, comma-separated (default: 12 for vmrnn-b, 2,2 for vmrnn-d).",
        ),
    ] = None,
    patch_size: Annotated[
        int | None,
        typer.Option(
            "--patch-size",
            show_default=False,
            help="Pixels per token side (default: 4 for vmrnn-b, 2 for vmrnn-d; the window is the cube's).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training windows.")] = TrainConfig.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Windows per step (per process under torchrun).")
    ] = TrainConfig.batch_size,
    lr: Annotated[
        float,
        typer.Option(
            "--lr",
            help="Peak AdamW learning rate (weight decay 0.05; linear warm-up over the first 5% of steps, then "
            "cosine decay to 0).",
        ),
    ] = TrainConfig.lr,
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the weights and the data order.")] = TrainConfig.seed,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", show_default=False, help="DataLoader worker processes (default: 4 on CUDA, 0 on CPU)."
        ),
    ] = None,
    grad_checkpoint: Annotated[
        bool,
        typer.Option(
            "--grad-checkpoint/--no-grad-checkpoint",
            help="Keep only each frame's inputs and state and recompute the rest in backward: far less memory for one "
            "extra forward pass; same maths.",
        ),
    ] = False,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graphs/--no-cuda-graphs",
            show_default=False,
            help="Capture the model's forward and backward once as CUDA graphs and replay them for every full-size "
            "batch: far fewer kernel launches; same maths (default: on where they can run: one CUDA GPU, one "
            "process, no --compile).",
        ),
    ] = None,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="Run the model's forward through torch.compile (the first full-size batch compiles, which takes "
            "minutes; not with --cuda-graphs): fused kernels, fewer launches; same maths up to float rounding.",
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            show_default=False,
            help="TOML file with any of these options (e.g. epochs = 30); options given here win.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last.pt.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in a run directory that already holds a run.")
    ] = False,
) -> None:
    """Train VMRNN on a prepared cube; Ctrl-C/SIGTERM checkpoint and stop, --resume continues."""
    from vmrnn_cli.options import TRAIN_KEYS
    from vmrnn_cli.training.loop import Interrupted
    from vmrnn_cli.training.loop import train as run_train

    given = {name: ctx.params[name] for name in TRAIN_KEYS if ctx.get_parameter_source(name).name == "COMMANDLINE"}
    if "depths" in given:
        given["depths"] = parse_int_list("depths", depths)
    try:
        paths = run_train(cube, output, config_file=config, given=given, resume=resume, overwrite=overwrite)
    except Interrupted as stop:
        typer.echo(f"vmrnn train: {stop}; continue with --resume", err=True)
        raise typer.Exit(128 + stop.signum) from None
    for path in paths:
        typer.echo(str(path))


@app.command()
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="The scene's latest frames: GeoTIFF files or globs, or a NetCDF file / Zarr store.", show_default=False
        ),
    ],
    model: Model,
    output: Annotated[Path, _output("Output: a directory of COGs, a .nc file or a .zarr store.")],
    horizon: Annotated[
        int, typer.Option("--horizon", help="Frames to forecast (any number >= 1).", show_default=False)
    ],
    var: Var = None,
    time_format: TimeFormat = None,
    bands: Bands = None,
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
    overwrite: Overwrite = False,
    as_json: Json = False,
) -> None:
    """Forecast the next --horizon frames of a whole scene as georeferenced rasters; prints the paths written."""
    import json

    from vmrnn_cli.forecast.predict import predict as run_predict

    options = PredictOptions(
        horizon=horizon,
        read=ReadOptions(var, time_format, parse_int_list("bands", bands)),
        context=context,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        format=fmt,
        overwrite=overwrite,
    )
    summary = run_predict(model, inputs, output, options)
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        for path in summary.paths:
            typer.echo(str(path))


@app.command()
def evaluate(
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
    output: Annotated[Path | None, _output("Write the scores as JSON to this file.")] = None,
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing JSON/PNG outputs.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scores as JSON on stdout instead of the paths written.")
    ] = False,
    split: Annotated[str | None, typer.Option("--split", hidden=True)] = None,
    extra: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Score a model on every window of a part of a cube per lead time (MSE, MAE, RMSE, SSIM, PSNR), against persistence and climatology; table on stderr, paths written on stdout."""  # noqa: E501 - one line: typer shows the docstring's lines as they are
    from vmrnn_cli.verify.evaluate import evaluate as run_evaluate
    from vmrnn_cli.verify.report import to_json

    if extra:
        if as_json:
            raise OptionError(
                "json", "is a flag now (the scores as JSON on stdout); write them to a file with `output` FILE.json"
            )
        raise typer.BadParameter(f"unexpected extra argument {extra[0]!r}")
    if split is not None:
        _deprecated("evaluate --split", "--part")
        part = split
    options = EvaluateOptions(part=part, device=device, batch_size=batch_size, overwrite=overwrite)
    result, paths = run_evaluate(model, cube, options, json_path=output, plot_path=plot)
    if as_json:
        typer.echo(to_json(result), nl=False)
    else:
        for path in paths:
            typer.echo(str(path))


@app.command()
def demo(
    output: Annotated[
        Path | None, _output("Directory for the demo's data, cube, run, forecast and evaluation.")
    ] = None,
    device: Device = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the demo's files in a non-empty output directory.")
    ] = False,
    out_dir: Annotated[Path | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Run the whole job on synthetic georeferenced data: make rasters, prepare, train, predict, evaluate (a few minutes on CPU)."""  # noqa: E501
    from vmrnn_cli.demo import demo as run_demo

    if out_dir is not None:
        _deprecated("demo OUT_DIR", "-o OUT_DIR")
        output = output or out_dir
    if output is None:
        raise OptionError("output", "is required: the directory to write the demo to")
    for path in run_demo(output, device=device, overwrite=overwrite):
        typer.echo(str(path))


def option_flags() -> dict[str, str]:
    """Every option's Python name mapped to its flag, e.g. "batch_size" -> "--batch-size", over all commands."""
    command = typer.main.get_command(app)
    flags: dict[str, str] = {}
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            for opt in (*param.opts, *getattr(param, "secondary_opts", ())):
                if opt.startswith("--"):
                    flags.setdefault(opt[2:].replace("-", "_"), opt)
    return flags


def as_flags(message: str) -> str:
    """A library message with `option_name` references shown as command-line flags (--option-name)."""
    flags = option_flags()
    return re.sub(r"`([a-z_]+)`", lambda m: flags.get(m.group(1), m.group(0)), message)


def _fail(message: str, code: int) -> None:
    if os.environ.get("VMRNN_DEBUG"):
        raise
    print(f"vmrnn: error: {as_flags(message)}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, turning any failure into one line on stderr: exit 2 for a bad option value, 1 for
    anything else."""
    try:
        app()
    except OptionError as err:
        _fail(str(err), 2)
    except VmrnnError as err:
        _fail(str(err), 1)
    except Exception as err:
        first_line = next(iter(str(err).strip().splitlines()), "")
        _fail(f"{type(err).__name__}: {first_line} (--debug shows the traceback)", 1)
