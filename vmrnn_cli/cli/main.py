"""The `vmrnn` command: the app, its commands (one module each), and one error line per failure.

Library errors name options by their Python name (`horizon`); `main` shows them as flags (--horizon).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from typing import Annotated

import typer

from vmrnn_cli import __version__
from vmrnn_cli.cli import demo, evaluate, predict, prepare, train
from vmrnn_cli.errors import OptionError, VmrnnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Forecast geospatial raster time series (GeoTIFF, NetCDF, Zarr) with VMRNN.",
)
for module in (prepare, train, predict, evaluate, demo):
    name = module.__name__.rsplit(".", 1)[-1]
    app.command(name, context_settings=getattr(module, "CONTEXT_SETTINGS", None))(module.command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show the full traceback on errors.")] = False,
) -> None:
    if debug:
        os.environ["VMRNN_DEBUG"] = "1"


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


class Stopped(BaseException):
    """Ctrl-C or SIGTERM, raised in the main thread so that every temporary output is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def main() -> None:
    """Entry point: run the app, turning any failure into one line on stderr: exit 2 for a bad option value, 1 for
    anything else, 128 + the signal's number after Ctrl-C or SIGTERM."""
    # OpenMP threads that wait for work sleep instead of spinning, unless the user chose otherwise. It must be in the
    # environment before torch loads OpenMP (the commands import torch only when they run): spinning threads steal
    # the CPU from the threads with work when the machine is busy (a small train 8x slower beside 2 busy processes).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    logging.getLogger("rasterio").addHandler(logging.NullHandler())  # GDAL's messages: the error line says it
    try:
        app()
    except Stopped as stop:
        if os.environ.get("VMRNN_DEBUG"):
            raise
        print(f"vmrnn: stopped by {signal.Signals(stop.signum).name}; nothing half-written is left", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except OptionError as err:
        _fail(str(err), 2)
    except VmrnnError as err:
        _fail(str(err), 1)
    except Exception as err:
        first_line = next(iter(str(err).strip().splitlines()), "")
        _fail(f"{type(err).__name__}: {first_line} (--debug shows the traceback)", 1)
