"""Score a trained model on every window of a cube split, per lead time, against persistence and climatology.

Scores are in the cube's physical units. All three forecasts are scored on the same pixels: those
where the truth and every forecast are valid (see vmrnn_cli.metrics for the NaN rules and SSIM).
PSNR and SSIM use each band's data range (max - min) over the evaluated split.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch.utils.data import DataLoader

from vmrnn_cli import plots
from vmrnn_cli.atomic import atomic_path, check_writable
from vmrnn_cli.baselines import climatology, climatology_mean, persistence
from vmrnn_cli.checkpoint import load_checkpoint
from vmrnn_cli.cube import PARTS, Cube, open_cube
from vmrnn_cli.dataset import WindowDataset
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.metrics import LeadTimeScores
from vmrnn_cli.predict import auto_batch_size, rollout
from vmrnn_cli.train import pick_device

METHODS = ("model", "persistence", "climatology")
# windows per pass at most when none is given: each batch is scored on the host (numpy), whose memory grows
# with it, while an H100's rollout gains little past ~256 windows of 64 px (benchmarks/RESULTS.md)
MAX_AUTO_WINDOWS = 256


def panel_path(plot_path: Path) -> Path:
    """Where `--plot FILE.png` puts its second figure: FILE_panel.png beside it."""
    plot_path = Path(plot_path)
    return plot_path.with_name(f"{plot_path.stem}_panel{plot_path.suffix}")


def _data_range(cube: Cube, part: str) -> np.ndarray:
    """Each band's max - min over the part's time steps (1 where a band is constant or empty)."""
    start, stop = cube.split[part]
    data = cube.data.isel(time=slice(start, stop))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands
        spread = (data.max(dim=("time", "y", "x")) - data.min(dim=("time", "y", "x"))).values.astype(np.float64)
    return np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)


def _progress(total: int) -> Progress | nullcontext:
    if not sys.stderr.isatty():
        return nullcontext()
    bar = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    bar.add_task("windows", total=total)
    return bar


def score_split(checkpoint: Path, cube_path: Path, split: str = "test", device: str = "auto",
                batch_size: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Forecast every window of `split` and score it; returns the JSON-able result and one window's frames.

    `batch_size` windows go through the model at once; None picks it (`auto_batch_size`, at most
    MAX_AUTO_WINDOWS; reported as "batch_size"). The frames (band 0 of the split's first window: "context",
    "truth", "forecast") feed the panel plot.
    """
    if split not in PARTS:
        raise VmrnnError(f"--split {split}: must be one of {', '.join(PARTS)}")
    if batch_size is not None and batch_size < 1:
        raise VmrnnError(f"--batch-size {batch_size}: must be at least 1")
    ckpt = load_checkpoint(checkpoint)
    cube = open_cube(cube_path)
    if len(cube.band_names) != len(ckpt.geo["band_names"]):
        raise VmrnnError(f"{cube_path}: {len(cube.band_names)} band(s) differ from the {len(ckpt.geo['band_names'])} "
                         f"band(s) the model in {ckpt.path} was trained on")
    windows = cube.windows(split)
    if len(windows) == 0:
        raise VmrnnError(f"{cube_path}: the {split} split holds no window to evaluate (prepare the cube with a "
                         "larger share for it in --split)")
    n_in, n_out, size = cube.input_frames, cube.output_frames, cube.patch_size
    dev = pick_device(device)
    print(f"evaluating {len(windows)} {split} window(s) of {cube_path} ({n_in} -> {n_out} frames) on {dev}",
          file=sys.stderr, flush=True)
    net = ckpt.build_model().to(dev).eval()
    if batch_size is None:
        window = (n_in, len(cube.band_names), size, size)
        batch_size = min(MAX_AUTO_WINDOWS, auto_batch_size(net, window, n_out, dev, 0))
    cube_mean, cube_std = (np.asarray(s, dtype=np.float32).reshape(1, 1, -1, 1, 1) for s in (cube.mean, cube.std))
    ckpt_mean, ckpt_std = (np.asarray(s, dtype=np.float32).reshape(1, 1, -1, 1, 1) for s in (ckpt.mean, ckpt.std))
    normal = climatology_mean(cube.data, cube.split["train"])
    data_range = _data_range(cube, split)
    scores = {method: LeadTimeScores(n_out, data_range) for method in METHODS}
    panel: dict[str, np.ndarray] = {}
    done = 0
    with _progress(len(windows)) as bar:
        for batch in DataLoader(WindowDataset(cube, split), batch_size=batch_size):
            physical = batch.numpy() * cube_std + cube_mean
            context, truth = physical[:, :n_in], physical[:, n_in:]
            normalised = torch.from_numpy((context - ckpt_mean) / ckpt_std)
            forecasts = {
                "model": rollout(net, normalised, n_out, dev).numpy() * ckpt_std + ckpt_mean,
                "persistence": persistence(context, n_out),
                "climatology": climatology(
                    np.stack([normal[:, y0:y0 + size, x0:x0 + size] for _, y0, x0 in windows[done:done + len(batch)]]),
                    n_out),
            }
            if not panel:
                panel = {"context": context[0, :, 0], "truth": truth[0, :, 0], "forecast": forecasts["model"][0, :, 0]}
            common = np.isfinite(truth) & np.logical_and.reduce([np.isfinite(f) for f in forecasts.values()])
            for method, forecast in forecasts.items():
                scores[method].update(forecast, np.where(common, truth, np.nan))
            done += len(batch)
            if bar:
                bar.advance(bar.task_ids[0], len(batch))
    result: dict[str, Any] = {"lead_times": list(range(1, n_out + 1))}
    result.update({method: scores[method].result() for method in METHODS})
    result["skill"] = [1.0 - m / p if p > 0 else math.nan
                       for m, p in zip(result["model"]["mse"], result["persistence"]["mse"])]
    t0, y0, x0 = (int(v) for v in windows[0])
    result.update(split=split, windows=len(windows), batch_size=batch_size, checkpoint=str(ckpt.path),
                  cube=str(cube_path), band_names=list(cube.band_names), panel_window={"t0": t0, "y0": y0, "x0": x0})
    return result, panel


def _plain(value: Any) -> Any:
    """NaN and infinities become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(result: dict[str, Any]) -> str:
    """The evaluation as strict JSON text (NaN/inf as null)."""
    return json.dumps(_plain(result), indent=2) + "\n"


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    """The scores per lead time as a rich table on stderr."""
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    table = Table(title=f"{result['split']} split: {result['windows']} window(s), scores in physical units")
    columns = [("RMSE", "rmse", m) for m in METHODS] + [("MAE", "mae", "model")] + \
              [("SSIM", "ssim", m) for m in METHODS] + [("PSNR", "psnr", "model")]
    table.add_column("lead", justify="right")
    for label, _, method in columns:
        table.add_column(f"{label}\n{method}", justify="right")
    table.add_column("skill", justify="right")
    for i, lead in enumerate(result["lead_times"]):
        cells = [f"{result[method][score][i]:.4g}" for _, score, method in columns]
        table.add_row(str(lead), *cells, f"{result['skill'][i]:+.3f}")
    console.print(table)
    console.print("skill = 1 - MSE model / MSE persistence (> 0: the model beats persistence)")


def evaluate(checkpoint: Path, cube_path: Path, split: str = "test", json_path: Path | None = None,
             plot_path: Path | None = None, device: str = "auto", batch_size: int | None = None,
             overwrite: bool = False) -> tuple[dict[str, Any], list[Path]]:
    """Score the model, print the table on stderr and write the JSON and PNGs asked for; returns (result, paths)."""
    targets = [Path(json_path)] if json_path is not None else []
    if plot_path is not None:
        plot_path = Path(plot_path)
        if plot_path.suffix.lower() != ".png":
            raise VmrnnError(f"--plot {plot_path}: must name a .png file")
        targets += [plot_path, panel_path(plot_path)]
    for target in targets:
        check_writable(target, overwrite)
    result, panel = score_split(checkpoint, cube_path, split, device, batch_size)
    print_table(result)
    if json_path is not None:
        with atomic_path(Path(json_path), overwrite) as tmp:
            tmp.write_text(to_json(result))
    if plot_path is not None:
        plots.plot_scores(result, plot_path, overwrite)
        window = result["panel_window"]
        plots.plot_panel(panel["context"], panel["truth"], panel["forecast"], panel_path(plot_path),
                         title=f"{result['split']} window t0={window['t0']} y0={window['y0']} x0={window['x0']}, "
                               f"band {result['band_names'][0]}", overwrite=overwrite)
    return result, targets

