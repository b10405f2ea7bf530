"""The run directory: its files, a new run's refusal of an old one, the resumed run's config, metrics.csv."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.lock import leftovers
from vmrnn_cli.io.outputs import MANIFEST, check_place, write_manifest
from vmrnn_cli.options import TrainConfig
from vmrnn_cli.training.checkpoint import Checkpoint

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "config.toml")
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds")
# options a resumed run may change: hardware and how a step runs, not what it computes
RESUMABLE_ANYWHERE = ("device", "workers", "grad_checkpoint", "cuda_graphs", "compile", "checkpoint_every")


def check_run_dir(run_dir: Path, cube: Path, overwrite: bool, resume: bool) -> None:
    """Refuse, before any compute, a run directory that must not be written: not a directory, a symbolic link,
    the current directory or one holding the cube; holding files that are not a run's (whatever `overwrite`
    says); holding a run unless `resume` or `overwrite`."""
    check_place(run_dir, [cube])
    if resume:
        if not (run_dir / "last.pt").exists():
            raise VmrnnError(f"{run_dir / 'last.pt'}: nothing to resume (no such file)")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise VmrnnError(f"{run_dir}: exists and is not a directory")
    if not run_dir.exists():
        return
    foreign = next(
        (
            p
            for p in sorted(run_dir.iterdir())
            if p.name not in (*RUN_FILES, MANIFEST) and not any(p.name.startswith(f".{name}.") for name in RUN_FILES)
        ),
        None,
    )
    if foreign is not None:
        raise VmrnnError(
            f"{run_dir}: holds {foreign}, which is not part of a vmrnn run; train into a new or empty directory"
        )
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise VmrnnError(
            f"{run_dir}: already holds a run ({', '.join(existing)}); pass `resume` to continue it or `overwrite` "
            "to start over"
        )


def start_run(run_dir: Path, config_toml: str) -> None:
    """Make the run directory of a new run: its manifest, config.toml, and none of an old run's files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    write_manifest(run_dir, RUN_FILES)
    (run_dir / "config.toml").write_text(config_toml)


def clear_leftovers(run_dir: Path) -> None:
    """Remove the temporary files a killed run left in its directory (under the run's lock)."""
    for name in RUN_FILES:
        for stale in leftovers(run_dir / name):
            stale.unlink(missing_ok=True)


def resumed_config(ckpt: Checkpoint, given: dict[str, Any]) -> TrainConfig:
    """The run's own config; options given now may only change those in RESUMABLE_ANYWHERE."""
    config = TrainConfig(**ckpt.config["train"])
    for key, value in given.items():
        if key not in RESUMABLE_ANYWHERE and getattr(config, key) != value:
            raise VmrnnError(
                f"{ckpt.path}: `{key}` {value} differs from the run's {getattr(config, key)}; "
                "a resumed run keeps its config (start a new run to change it)"
            )
    return TrainConfig(**{**asdict(config), **{k: v for k, v in given.items() if k in RESUMABLE_ANYWHERE}})


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Write metrics.csv (one row per epoch) atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(run_dir / "metrics.csv", overwrite=True) as tmp:
        tmp.write_text(text.getvalue())
