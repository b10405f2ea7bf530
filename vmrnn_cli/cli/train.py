"""`vmrnn train`: train VMRNN on a prepared cube; Ctrl-C/SIGTERM checkpoint, `--resume` continues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmrnn_cli.cli.flags import Device, Quiet, Threads, apply_shared, output
from vmrnn_cli.options import ARCHS, OUTPUT_ACTIVATIONS, TrainConfig, parse_int_list


def command(
    ctx: typer.Context,
    cube: Annotated[Path, typer.Argument(help="Cube written by `vmrnn prepare` (.zarr).", show_default=False)],
    output: Annotated[Path, output("Run directory (checkpoints best.pt/last.pt, metrics.csv, config.toml).")],
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
            help="Peak AdamW learning rate (linear warm-up over the first 5% of steps, then cosine decay to 0).",
        ),
    ] = TrainConfig.lr,
    weight_decay: Annotated[
        float,
        typer.Option(
            "--weight-decay",
            help="AdamW's decoupled weight decay, on weight matrices and kernels only: never on biases, norms or the "
            "SSM's A_logs, Ds and dt bias (0: plain Adam).",
        ),
    ] = TrainConfig.weight_decay,
    drop_path: Annotated[
        float,
        typer.Option(
            "--drop-path",
            help="Stochastic depth in [0, 1): a block's chance of skipping its SS2D branch, per sample, in training "
            "(vmrnn-b: every block; vmrnn-d: from 0 up to it over each path's blocks). Off in predict and evaluate.",
        ),
    ] = TrainConfig.drop_path,
    output_activation: Annotated[
        str,
        typer.Option(
            "--output-activation",
            metavar="[" + "|".join(OUTPUT_ACTIVATIONS) + "]",
            help="The output head: identity (on standardised data) or sigmoid, for data within [0, 1] (reflectance, "
            "fractions, Moving-MNIST-like frames): trains on the cube's own values, not standardised, and is "
            "refused where any value lies outside [0, 1] (checking reads the cube once).",
        ),
    ] = TrainConfig.output_activation,
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the weights and the data order.")] = TrainConfig.seed,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", show_default=False, help="DataLoader worker processes (default: 4 on CUDA, 0 on CPU)."
        ),
    ] = None,
    grad_checkpoint: Annotated[
        bool | None,
        typer.Option(
            "--grad-checkpoint/--no-grad-checkpoint",
            metavar="",
            show_default=False,
            help="Keep only each frame's inputs and state and recompute the rest in backward: far less memory for one "
            "extra forward pass; same maths (default: off, turned on by itself where a training step does not fit "
            "in GPU memory).",
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graphs/--no-cuda-graphs",
            metavar="",
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
            metavar="",
            help="Run the model's forward through torch.compile (the first full-size batch compiles, which takes "
            "minutes; not with --cuda-graphs): fused kernels, fewer launches; same maths up to float rounding.",
        ),
    ] = False,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            "--checkpoint-every",
            metavar="MINUTES",
            help="Also write last.pt inside an epoch at least this often, so a kill loses at most this much work.",
        ),
    ] = TrainConfig.checkpoint_every,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            show_default=False,
            help="TOML file with any of these options (e.g. epochs = 30); options given here win.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue the run in --output from its last.pt.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Start over in a run directory that already holds a run.")
    ] = False,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Train VMRNN on a prepared cube; Ctrl-C/SIGTERM checkpoint and stop, --resume continues."""
    apply_shared(threads, quiet)
    from vmrnn_cli.options import TRAIN_KEYS
    from vmrnn_cli.training.interrupt import Interrupted
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
