"""Checkpoints as data, never code: tensors plus plain types/JSON, loaded with `torch.load(weights_only=True)`.

A checkpoint holds everything `predict` and `evaluate` need (weights, the model and run config, the
normalisation statistics, the georeferencing template of the training cube) and what `--resume`
needs to continue bit-for-bit (optimizer state, RNG state, position in the data order, running sums).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vmrnn_cli.data.cube import CubeSpec
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.atomic import atomic_path

FORMAT = "vmrnn-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """The contents of one checkpoint file.

    model: the network's state_dict; config: the full run config (`model` holds `arch` and the
    constructor kwargs); mean/std: per-band normalisation statistics; spec: what the model keeps of the
    training cube (grid, bands, time step, window sizes); state: training progress for `resume` (empty in a
    weights-only file).
    """

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    spec: CubeSpec
    state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build_model(self) -> nn.Module:
        """Rebuild the network from the config and load its weights (error if they do not fit or are not finite)."""
        if not all(torch.isfinite(t).all() for t in self.model.values() if t.is_floating_point()):
            raise VmrnnError(
                f"{self.path}: holds non-finite weights (its training diverged); train again, e.g. with a lower `lr`"
            )
        net = build_network(self.config["model"], len(self.spec.band_names), self.spec.window)
        try:
            net.load_state_dict(self.model)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise VmrnnError(
                f"{self.path}: checkpoint weights do not fit a {self.config['model']['arch']} model ({first})"
            ) from None
        return net


def build_network(model_config: dict[str, Any], in_channels: int, window: int) -> nn.Module:
    """Construct the (untrained) network for a model config on square training windows of `window` pixels."""
    from models import build_model

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in model_config.items() if k != "arch"}
    return build_model(model_config["arch"], in_channels=in_channels, img_size=(window, window), **kwargs)


def save_checkpoint(ckpt: Checkpoint, target: Path) -> None:
    """Write a checkpoint atomically (a killed job leaves the previous file intact)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.detach().cpu() for k, v in ckpt.model.items()},
        "config_json": json.dumps(ckpt.config),
        "geo_json": json.dumps(ckpt.spec.to_json()),
        "mean": torch.as_tensor(np.asarray(ckpt.mean, dtype=np.float64)),
        "std": torch.as_tensor(np.asarray(ckpt.std, dtype=np.float64)),
        "state": ckpt.state,
    }
    with atomic_path(Path(target), overwrite=True) as tmp:
        torch.save(payload, tmp)


def resolve(path: Path) -> Path:
    """A checkpoint file from a run directory (best.pt, else last.pt) or a file path."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise VmrnnError(f"{path}: no checkpoint in this run directory (expected best.pt or last.pt)")
    if not path.exists():
        raise VmrnnError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint (file or run directory) safely; anything that is not one is a clear error."""
    path = resolve(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        kind = (
            "it holds code or objects other than tensors and plain data"
            if "Unsupported global" in str(err)
            else "torch.load cannot read it"
        )
        raise VmrnnError(f"{path}: not a vmrnn checkpoint ({kind})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise VmrnnError(f"{path}: not a vmrnn checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise VmrnnError(
            f"{path}: checkpoint version {payload.get('version')} is not supported (this vmrnn reads version {VERSION})"
        )
    try:
        return Checkpoint(
            model=payload["model"],
            config=json.loads(payload["config_json"]),
            mean=payload["mean"].numpy(),
            std=payload["std"].numpy(),
            spec=CubeSpec.from_json(json.loads(payload["geo_json"])),
            state=payload.get("state", {}),
            path=path,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise VmrnnError(f"{path}: damaged vmrnn checkpoint ({type(err).__name__}: {err})") from None
