"""Every command's options in one place: each option's default and validation, shared by the CLI, TOML run files
and the library. A bad value raises OptionError naming the option (the CLI shows it as its flag, exit 2).

The run config of `vmrnn train` (TrainConfig) can also come from a TOML file: defaults < the file < the options
given on the command line.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from vmrnn_cli.errors import OptionError, VmrnnError

ARCHS = ("vmrnn-b", "vmrnn-d")
DEVICES = ("auto", "cpu", "cuda")
PARTS = ("train", "val", "test")
FORMATS = ("cog", "netcdf", "zarr")
OUTPUT_ACTIVATIONS = ("identity", "sigmoid")
ARCH_DEFAULTS = {"vmrnn-b": {"patch_size": 4, "depths": [12]}, "vmrnn-d": {"patch_size": 2, "depths": [2, 2]}}


def _positive_int(name: str, value: Any, allow_none: bool = False, minimum: int = 1) -> None:
    """Refuse anything but an int >= minimum (None too where allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise OptionError(name, f"must be {kind}, got {value!r}")


def _is_number(value: Any) -> bool:
    """An int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _boolean(name: str, value: Any, allow_none: bool = False) -> None:
    if not isinstance(value, bool) and not (allow_none and value is None):
        raise OptionError(name, f"must be true or false, got {value!r}")


def parse_int_list(name: str, text: str | None) -> list[int] | None:
    """Parse "1,3" into [1, 3] (None stays None); OptionError on anything else."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise OptionError(name, f"must be a comma-separated list of integers like 1,3, got {text!r}") from None


def parse_split(text: str) -> tuple[float, float, float]:
    """Parse "train,val,test" fractions into a tuple (checked by PrepareOptions)."""
    try:
        return tuple(float(v) for v in text.split(","))  # type: ignore[return-value]
    except ValueError:
        raise OptionError("split", f"must be three comma-separated numbers like 0.8,0.1,0.1, got {text!r}") from None


@dataclass(frozen=True)
class ReadOptions:
    """How rasters are read (prepare and predict): the NetCDF/Zarr variable, the date pattern of GeoTIFF names,
    the bands to keep (1-based; None: all), whether irregular lat/lon axes are resampled onto a regular grid, and
    the series' time step as a pandas offset alias (None: inferred)."""

    var: str | None = None
    time_format: str | None = None
    bands: tuple[int, ...] | None = None
    regrid: bool = False
    freq: str | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))
            if not self.bands or any(not isinstance(b, int) or b < 1 for b in self.bands):
                raise OptionError("bands", f"must be band numbers >= 1, got {list(self.bands)}")
        if self.freq is not None:
            try:
                pd.tseries.frequencies.to_offset(self.freq)
            except ValueError:
                raise OptionError(
                    "freq", f"must be a pandas offset alias such as 1D, 16D, 3h or MS, got {self.freq!r}"
                ) from None


@dataclass(frozen=True)
class PrepareOptions:
    """`vmrnn prepare`: the model's frames in and out, the training window (side in pixels) and its stride
    (None: the window), the train/val/test fractions of the time axis, the Zarr format."""

    read: ReadOptions = field(default_factory=ReadOptions)
    input_frames: int = 10
    output_frames: int = 10
    window: int = 64
    stride: int | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    zarr_format: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("input_frames", "output_frames", "window"):
            _positive_int(name, getattr(self, name))
        _positive_int("stride", self.stride, allow_none=True)
        if self.zarr_format not in (2, 3):
            raise OptionError("zarr_format", f"must be 2 or 3, got {self.zarr_format!r}")
        parts = tuple(self.split)
        if len(parts) != 3 or min(parts) < 0 or not math.isclose(sum(parts), 1.0, abs_tol=1e-6) or parts[0] == 0:
            shown = ",".join(f"{v:g}" for v in parts)
            raise OptionError(
                "split", f"must be three fractions >= 0 summing to 1, train > 0 (e.g. 0.8,0.1,0.1), got {shown}"
            )
        object.__setattr__(self, "split", parts)

    @property
    def step(self) -> int:
        """The stride between windows in pixels."""
        return self.stride or self.window


@dataclass(frozen=True)
class PredictOptions:
    """`vmrnn predict`: the horizon, the context frames (None: the model's), the tile overlap (None: a quarter of
    the tile), tiles per forward pass (None: picked from memory), the device, the output format (None: from the
    output's name), and whether a pixel size far from the training one is accepted."""

    horizon: int
    read: ReadOptions = field(default_factory=ReadOptions)
    context: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    format: str | None = None
    allow_resolution_change: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        _positive_int("horizon", self.horizon)
        _positive_int("context", self.context, allow_none=True)
        _positive_int("overlap", self.overlap, allow_none=True, minimum=0)
        _positive_int("batch_size", self.batch_size, allow_none=True)
        _one_of("device", self.device, DEVICES)
        if self.format is not None:
            _one_of("format", self.format, FORMATS)


@dataclass(frozen=True)
class EvaluateOptions:
    """`vmrnn evaluate`: which part of the cube to score, the lead times (None: the cube's output frames), the
    device, windows per forward pass (None: picked from memory), and whether a pixel size far from the training one
    is accepted."""

    part: str = "test"
    horizon: int | None = None
    device: str = "auto"
    batch_size: int | None = None
    allow_resolution_change: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        _one_of("part", self.part, PARTS)
        _positive_int("horizon", self.horizon, allow_none=True)
        _one_of("device", self.device, DEVICES)
        _positive_int("batch_size", self.batch_size, allow_none=True)


@dataclass
class TrainConfig:
    """Everything that defines a training run; the same names as the `vmrnn train` options and TOML keys.

    depths/patch_size of None mean the architecture's default (see ARCH_DEFAULTS); workers of None
    means 4 DataLoader workers on CUDA and 0 (load in the main process) on CPU; cuda_graphs of None means
    on where they can run (one CUDA GPU, one process, no compile); grad_checkpoint of None means off until a training
    step does not fit in GPU memory, then on (with one line saying so). grad_checkpoint, cuda_graphs and compile
    change how a step runs (memory, speed), not what it computes; checkpoint_every (minutes) how often last.pt
    is written inside an epoch.

    The recipe: AdamW at peak `lr` with decoupled `weight_decay` on the weight matrices and kernels only (never on
    biases, norms or the SSM's A_logs, Ds and dt bias; vmrnn_cli.training.recipe), stochastic depth `drop_path`
    (vmrnn-b: every block's rate; vmrnn-d: rates from 0 up to it over each path's blocks) and the output head:
    "identity" on standardised data, or "sigmoid", which trains on the cube's own values and so needs them all
    within [0, 1].
    """

    arch: str = "vmrnn-b"
    embed_dim: int = 128
    depths: list[int] | None = None
    patch_size: int | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    drop_path: float = 0.0
    output_activation: str = "identity"
    device: str = "auto"
    seed: int = 0
    workers: int | None = None
    grad_checkpoint: bool | None = None
    cuda_graphs: bool | None = None
    compile: bool = False
    checkpoint_every: float = 10.0

    def validate(self) -> TrainConfig:
        """Check every value (OptionError naming the first bad one) and fill in the architecture's defaults."""
        _one_of("arch", self.arch, ARCHS)
        _one_of("device", self.device, DEVICES)
        _one_of("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        defaults = ARCH_DEFAULTS[self.arch]
        depths = defaults["depths"] if self.depths is None else self.depths
        depths = [depths] if isinstance(depths, int) else list(depths)
        patch = defaults["patch_size"] if self.patch_size is None else self.patch_size
        if self.arch == "vmrnn-b" and len(depths) != 1:
            raise OptionError("depths", f"must be one depth for vmrnn-b (e.g. depths = [12]), got {depths}")
        for name, value in (
            ("embed_dim", self.embed_dim),
            ("patch_size", patch),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            *(("depths", d) for d in depths),
        ):
            _positive_int(name, value)
        for name in ("lr", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise OptionError(name, f"must be a positive number, got {value!r}")
        if not _is_number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise OptionError("weight_decay", f"must be a number >= 0, got {self.weight_decay!r}")
        if not _is_number(self.drop_path) or not 0 <= self.drop_path < 1:
            raise OptionError("drop_path", f"must be a number in [0, 1), got {self.drop_path!r}")
        _positive_int("workers", self.workers, allow_none=True, minimum=0)
        _boolean("grad_checkpoint", self.grad_checkpoint, allow_none=True)
        _boolean("cuda_graphs", self.cuda_graphs, allow_none=True)
        _boolean("compile", self.compile)
        return TrainConfig(
            **{
                **asdict(self),
                "depths": depths,
                "patch_size": patch,
                "lr": float(self.lr),
                "weight_decay": float(self.weight_decay),
                "drop_path": float(self.drop_path),
                "checkpoint_every": float(self.checkpoint_every),
            }
        )

    def model_config(self) -> dict[str, Any]:
        """The architecture and constructor kwargs stored in the checkpoint; drop_path only where it is not 0 (the
        models' default), so that a run without it stores the same model config as before the option existed."""
        depths: int | list[int] = self.depths[0] if self.arch == "vmrnn-b" else list(self.depths)
        config: dict[str, Any] = {
            "arch": self.arch,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": depths,
            "output_activation": self.output_activation,
        }
        if self.drop_path:
            config["drop_path"] = self.drop_path
        return config


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))


def read_toml(path: Path) -> dict[str, Any]:
    """Read a run config file: flat `key = value` lines with the names of the `vmrnn train` options."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise VmrnnError(f"{path}: no such config file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise VmrnnError(f"{path}: not a readable TOML file ({err})") from None
    unknown = sorted(set(values) - set(TRAIN_KEYS))
    if unknown:
        raise VmrnnError(f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(TRAIN_KEYS))}")
    return values


def validated(values: dict[str, Any], toml_path: Path | None, from_file: set[str]) -> TrainConfig:
    """TrainConfig(**values).validate(); a bad value that came from the TOML file is an error naming the file."""
    try:
        return TrainConfig(**values).validate()
    except OptionError as err:
        if toml_path is not None and err.option in from_file:
            raise VmrnnError(f"{toml_path}: {err.option} {err.detail}") from None
        raise


def resolve_config(toml_path: Path | None, given: dict[str, Any]) -> TrainConfig:
    """Merge defaults, the TOML file (if any) and the options given on the command line, then validate."""
    from_file = read_toml(toml_path) if toml_path is not None else {}
    return validated({**from_file, **given}, toml_path, set(from_file) - set(given))


def to_toml(config: TrainConfig) -> str:
    """The config as TOML text that `--config` reads back (JSON scalars and int lists are valid TOML)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in asdict(config).items() if value is not None)
