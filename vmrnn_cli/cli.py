"""The `vmrnn` command: parse options, call one library function, report on stdout/stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal, Optional

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


@app.command()
def prepare(
    inputs: list[str] = typer.Argument(..., help="GeoTIFF files or globs (quoted globs too), or NetCDF file(s), or Zarr store(s).", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Cube to write (a .zarr directory).", show_default=False),
    var: Optional[str] = typer.Option(None, "--var", help="NetCDF/Zarr variable (default: the only 3-D/4-D one)."),
    time_format: Optional[str] = typer.Option(None, "--time-format", help="strftime pattern of the date in GeoTIFF names, e.g. '%d%m%Y' (default: ISO dates, then TIFFTAG_DATETIME)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Bands to keep, 1-based, comma-separated, e.g. 1,3 (default: all)."),
    input_frames: int = typer.Option(10, "--input-frames", min=1, help="Frames the model sees."),
    output_frames: int = typer.Option(10, "--output-frames", min=1, help="Frames the model predicts in training."),
    patch_size: int = typer.Option(64, "--patch-size", min=1, help="Side of the square training patches, in pixels."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="Step between patches, in pixels (default: the patch size)."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="Train,val,test fractions of the time axis, in time order."),
    zarr_format: int = typer.Option(2, "--zarr-format", min=2, max=3, help="Zarr format: 2 (GDAL/QGIS read it) or 3."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Turn rasters into a normalised, chunked, georeferenced Zarr cube with a train/val/test window index."""
    from vmrnn_cli.prepare import parse_bands, parse_split, prepare as run_prepare

    try:
        fractions = parse_split(split)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--split") from None
    try:
        band_list = parse_bands(bands)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--bands") from None
    summary = run_prepare(
        inputs, output, var=var, time_format=time_format, bands=band_list, input_frames=input_frames,
        output_frames=output_frames, patch_size=patch_size, stride=stride, split=fractions,
        zarr_format=zarr_format, overwrite=overwrite,
    )
    n_time, n_band, height, width = summary.shape
    counts = ", ".join(f"{part} {summary.windows[part]} (frames {a}-{b})" for part, (a, b) in summary.split.items())
    typer.echo(f"vmrnn prepare: {n_time} frames x {n_band} band(s) x {height} x {width} px; windows: {counts}", err=True)
    typer.echo(str(summary.output))


@app.command()
def train(
    ctx: typer.Context,
    cube: Path = typer.Argument(..., help="Cube written by `vmrnn prepare` (.zarr).", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Run directory (checkpoints best.pt/last.pt, metrics.csv, config.toml).", show_default=False),
    arch: Literal["vmrnn-b", "vmrnn-d"] = typer.Option("vmrnn-b", "--arch", help="VMRNN-B (one cell stack) or VMRNN-D (down/up-sampling)."),
    embed_dim: int = typer.Option(128, "--embed-dim", help="Channels per token."),
    depths: Optional[str] = typer.Option(None, "--depths", help="Blocks per cell stack, comma-separated (default: 12 for vmrnn-b, 2,2 for vmrnn-d).", show_default=False),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", help="Pixels per token side (default: 4 for vmrnn-b, 2 for vmrnn-d; the window size is the cube's).", show_default=False),
    epochs: int = typer.Option(20, "--epochs", help="Passes over the training windows."),
    batch_size: int = typer.Option(8, "--batch-size", help="Windows per step (per process under torchrun)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate (weight decay 0.05; linear warm-up over the first 5% of steps, then cosine decay to 0)."),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", "--device", help="auto: CUDA (bf16 autocast) when there is a GPU, else CPU."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights and the data order."),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes (default: 4 on CUDA, 0 on CPU).", show_default=False),
    grad_checkpoint: bool = typer.Option(False, "--grad-checkpoint/--no-grad-checkpoint", help="Keep only each frame's inputs and state and recompute the rest in backward: far less memory for one extra forward pass; same maths."),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs", help="Capture the model's forward and backward once as CUDA graphs and replay them for every full-size batch: far fewer kernel launches; same maths (default: on where they can run: one CUDA GPU, one process, no --compile).", show_default=False),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="Run the model's forward through torch.compile (default mode; the first full-size batch compiles, which takes minutes; not with --cuda-graphs): fused kernels, fewer launches; same maths up to float rounding."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these options (e.g. epochs = 30); options given here win.", show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a run directory that already holds a run."),
) -> None:
    """Train VMRNN on a prepared cube; Ctrl-C/SIGTERM checkpoint and stop, --resume continues."""
    from vmrnn_cli.train import Interrupted, train as run_train

    names = ("arch", "embed_dim", "depths", "patch_size", "epochs", "batch_size", "lr", "device", "seed", "workers",
             "grad_checkpoint", "cuda_graphs", "compile")
    given = {name: ctx.params[name] for name in names if ctx.get_parameter_source(name).name == "COMMANDLINE"}
    if "depths" in given:
        try:
            given["depths"] = [int(v) for v in given["depths"].split(",")]
        except ValueError:
            raise typer.BadParameter(f"{depths!r} is not a comma-separated list of integers like 2,2", param_hint="--depths") from None
    try:
        paths = run_train(cube, output, config_file=config, given=given, resume=resume, overwrite=overwrite)
    except Interrupted as stop:
        typer.echo(f"vmrnn train: {stop}; continue with --resume", err=True)
        raise typer.Exit(128 + stop.signum) from None
    for path in paths:
        typer.echo(str(path))


@app.command()
def predict(
    inputs: list[str] = typer.Argument(..., help="The scene's latest frames: GeoTIFF files or globs, or a NetCDF file / Zarr store.", show_default=False),
    model: Path = typer.Option(..., "-m", "--model", help="Run directory (uses best.pt) or checkpoint file.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output: a directory of COGs, a .nc file or a .zarr store.", show_default=False),
    horizon: int = typer.Option(..., "--horizon", help="Frames to forecast (any number >= 1).", show_default=False),
    var: Optional[str] = typer.Option(None, "--var", help="NetCDF/Zarr variable (default: the only 3-D/4-D one)."),
    time_format: Optional[str] = typer.Option(None, "--time-format", help="strftime pattern of the date in GeoTIFF names (default: ISO dates, then TIFFTAG_DATETIME)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Bands to use, 1-based, comma-separated, as given to prepare (default: all)."),
    context: Optional[int] = typer.Option(None, "--context", help="Latest frames fed to the model (default: the model's input frames).", show_default=False),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Overlap of neighbouring tiles in pixels (default: a quarter of the training patch).", show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Tiles per forward pass (default: on a GPU as many as fit in half its free memory, up to 1024; 16 on the CPU).", show_default=False),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", "--device", help="auto: CUDA when there is a GPU, else CPU."),
    fmt: Optional[Literal["cog", "netcdf", "zarr"]] = typer.Option(None, "--format", help="Output format (default: netcdf for .nc, zarr for .zarr, else a directory of COGs).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout instead of the paths."),
) -> None:
    """Forecast the next --horizon frames of a whole scene as georeferenced rasters; prints the paths written."""
    import json

    from vmrnn_cli.predict import predict as run_predict
    from vmrnn_cli.prepare import parse_bands

    try:
        band_list = parse_bands(bands)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--bands") from None
    summary = run_predict(
        model, inputs, output, horizon, var=var, time_format=time_format, bands=band_list, context=context,
        overlap=overlap, batch_size=batch_size, device=device, fmt=fmt, overwrite=overwrite,
    )
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        for path in summary.paths:
            typer.echo(str(path))


@app.command()
def evaluate(
    cube: Path = typer.Argument(..., help="Cube written by `vmrnn prepare` (.zarr) holding the windows to score.", show_default=False),
    model: Path = typer.Option(..., "-m", "--model", help="Run directory (uses best.pt) or checkpoint file.", show_default=False),
    split: Literal["train", "val", "test"] = typer.Option("test", "--split", help="Which windows of the cube to score."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the scores as JSON to this file ('-': stdout).", show_default=False),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the scores against lead time to this PNG, and context / truth / forecast of one window to <stem>_panel.png beside it.", show_default=False),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", "--device", help="auto: CUDA when there is a GPU, else CPU."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Windows per forward pass (default: on a GPU as many as fit in half its free memory, up to 256; 16 on the CPU).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing JSON/PNG outputs."),
) -> None:
    """Score a model on every window of a cube split per lead time (MSE, MAE, RMSE, SSIM, PSNR), against persistence and climatology; table on stderr, paths written on stdout."""
    from vmrnn_cli.evaluate import evaluate as run_evaluate, to_json

    to_stdout = json_file is not None and str(json_file) == "-"
    result, paths = run_evaluate(model, cube, split=split, json_path=None if to_stdout else json_file, plot_path=plot,
                                 device=device, batch_size=batch_size, overwrite=overwrite)
    if to_stdout:
        typer.echo(to_json(result), nl=False)
    else:
        for path in paths:
            typer.echo(str(path))


@app.command()
def demo(
    out_dir: Path = typer.Argument(..., help="Directory for the demo's data, cube, run, forecast and evaluation.", show_default=False),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", "--device", help="auto: CUDA when there is a GPU, else CPU."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT_DIR."),
) -> None:
    """Run the whole job on synthetic georeferenced data: make rasters, prepare, train, predict, evaluate (a few minutes on CPU)."""
    from vmrnn_cli.demo import demo as run_demo

    for path in run_demo(out_dir, device=device, overwrite=overwrite):
        typer.echo(str(path))


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
        first_line = next(iter(str(err).strip().splitlines()), "")
        print(f"vmrnn: error: {type(err).__name__}: {first_line} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(1)
