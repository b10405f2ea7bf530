"""Run configuration: defaults < a TOML file (`--config run.toml`) < options given on the command line."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vmrnn_cli.errors import VmrnnError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ARCHS = ("vmrnn-b", "vmrnn-d")
DEVICES = ("auto", "cpu", "cuda")
ARCH_DEFAULTS = {"vmrnn-b": {"patch_size": 4, "depths": [12]}, "vmrnn-d": {"patch_size": 2, "depths": [2, 2]}}


@dataclass
class TrainConfig:
    """Everything that defines a training run; the same names as the `vmrnn train` options and TOML keys.

    depths/patch_size of None mean the architecture's default (see ARCH_DEFAULTS); workers of None
    means 4 DataLoader workers on CUDA and 0 (load in the main process) on CPU; cuda_graphs of None means
    on where they can run (one CUDA GPU, one process, no compile). grad_checkpoint, cuda_graphs and compile
    change how a step runs (memory, speed), not what it computes.
    """

    arch: str = "vmrnn-b"
    embed_dim: int = 128
    depths: list[int] | None = None
    patch_size: int | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    device: str = "auto"
    seed: int = 0
    workers: int | None = None
    grad_checkpoint: bool = False
    cuda_graphs: bool | None = None
    compile: bool = False

    def validate(self, source: str) -> TrainConfig:
        """Check values and fill in the architecture defaults; errors name `source` (file or option)."""
        if self.arch not in ARCHS:
            raise VmrnnError(f"{source}: arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.device not in DEVICES:
            raise VmrnnError(f"{source}: device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        defaults = ARCH_DEFAULTS[self.arch]
        depths = defaults["depths"] if self.depths is None else self.depths
        depths = [depths] if isinstance(depths, int) else list(depths)
        patch = defaults["patch_size"] if self.patch_size is None else self.patch_size
        if self.arch == "vmrnn-b" and len(depths) != 1:
            raise VmrnnError(f"{source}: vmrnn-b takes one depth (e.g. depths = [12]), got {depths}")
        for name, value in (("embed_dim", self.embed_dim), ("patch_size", patch), ("epochs", self.epochs),
                            ("batch_size", self.batch_size), *(("depths", d) for d in depths)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VmrnnError(f"{source}: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.lr, int | float) or self.lr <= 0:
            raise VmrnnError(f"{source}: lr must be a positive number, got {self.lr!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise VmrnnError(f"{source}: workers must be an integer >= 0, got {self.workers!r}")
        for name, value in (("grad_checkpoint", self.grad_checkpoint), ("cuda_graphs", self.cuda_graphs),
                            ("compile", self.compile)):
            if not isinstance(value, bool) and not (name == "cuda_graphs" and value is None):
                raise VmrnnError(f"{source}: {name} must be true or false, got {value!r}")
        return TrainConfig(**{**asdict(self), "depths": depths, "patch_size": patch, "lr": float(self.lr)})

    def model_config(self) -> dict[str, Any]:
        """The architecture and constructor kwargs stored in the checkpoint (identity head: standardised data)."""
        depths: int | list[int] = self.depths[0] if self.arch == "vmrnn-b" else list(self.depths)
        return {"arch": self.arch, "patch_size": self.patch_size, "embed_dim": self.embed_dim, "depths": depths,
                "output_activation": "identity"}


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
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise VmrnnError(f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    return values


def resolve_config(toml_path: Path | None, given: dict[str, Any]) -> TrainConfig:
    """Merge defaults, the TOML file (if any) and the options given on the command line, then validate."""
    values = read_toml(toml_path) if toml_path is not None else {}
    values.update(given)
    return TrainConfig(**values).validate(str(toml_path) if toml_path is not None else "options")


def to_toml(config: TrainConfig) -> str:
    """The config as TOML text that `--config` reads back (JSON scalars and int lists are valid TOML)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in asdict(config).items() if value is not None)
