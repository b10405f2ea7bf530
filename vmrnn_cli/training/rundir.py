"""The run directory: its files, a new run's refusal of an old one, the resumed run's config, metrics.csv."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.options import TrainConfig
from vmrnn_cli.training.checkpoint import Checkpoint

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "config.toml")
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds")
# options a resumed run may change: hardware and how a step runs, not what it computes
RESUMABLE_ANYWHERE = ("device", "workers", "grad_checkpoint", "cuda_graphs", "compile")


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start over an existing run unless `overwrite` (then its files are replaced)."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise VmrnnError(
            f"{run_dir}: already holds a run ({', '.join(existing)}); "
            "pass `resume` to continue it or `overwrite` to start over"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise VmrnnError(f"{run_dir}: exists and is not a directory")


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
