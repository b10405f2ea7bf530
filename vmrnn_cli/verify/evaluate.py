"""Score a trained model on every window of a part of a cube, per lead time, against persistence and climatology.

Scores are in the cube's physical units. All three forecasts are scored on the same pixels: those
where the truth and every forecast are valid (see vmrnn_cli.verify.metrics for the NaN rules and SSIM).
PSNR and SSIM use each band's data range (max - min) over the evaluated part.
"""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vmrnn_cli.capacity import check_batch_fits
from vmrnn_cli.data.cube import Cube, open_cube
from vmrnn_cli.data.dataset import WindowDataset
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.forecast.rollout import auto_batch_size, rollout
from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.lock import locked
from vmrnn_cli.io.outputs import check_output
from vmrnn_cli.options import EvaluateOptions
from vmrnn_cli.progress import Steps
from vmrnn_cli.runtime import pick_device
from vmrnn_cli.training.checkpoint import load_checkpoint, resolve
from vmrnn_cli.verify import plots
from vmrnn_cli.verify.baselines import climatology, climatology_mean, persistence
from vmrnn_cli.verify.metrics import LeadTimeScores
from vmrnn_cli.verify.report import METHODS, print_table, to_json

# windows per pass at most when none is given: each batch is scored on the host (numpy), whose memory grows
# with it, while an H100's rollout gains little past ~256 windows of 64 px (benchmarks/RESULTS.md)
MAX_AUTO_WINDOWS = 256


def panel_path(plot_path: Path) -> Path:
    """Where `plot` FILE.png puts its second figure: FILE_panel.png beside it."""
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


def score_part(
    checkpoint: Path, cube_path: Path, options: EvaluateOptions
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Forecast every window of the cube's part `options.part` and score it; returns the JSON-able result and one
    window's frames.

    `options.batch_size` windows go through the model at once; None picks it (`auto_batch_size`, at most
    MAX_AUTO_WINDOWS; reported as "batch_size"). The frames (band 0 of the part's first window: "context",
    "truth", "forecast") feed the panel plot.
    """
    part = options.part
    ckpt = load_checkpoint(checkpoint)
    cube = open_cube(cube_path)
    mismatch = ckpt.spec.mismatch(cube.grid, cube.band_names, options.allow_resolution_change)
    if mismatch:
        raise VmrnnError(f"{cube_path}: {mismatch}")
    n_in, n_out, size = cube.input_frames, options.horizon or cube.output_frames, cube.window
    dataset = WindowDataset(cube, part, n_in + n_out)
    windows = dataset.windows
    if len(windows) == 0:
        raise VmrnnError(
            f"{cube_path}: the {part} part holds no window of {n_in} + {n_out} frames to evaluate (prepare the cube "
            "with a larger share for it in `split`, or give a smaller `horizon`)"
        )
    if options.batch_size is not None:
        check_batch_fits(options.batch_size, (n_in + n_out) * len(cube.band_names) * size * size * 4, "windows")
    dev = pick_device(options.device)
    print(
        f"evaluating {len(windows)} {part} window(s) of {cube_path} ({n_in} -> {n_out} frames) on {dev}",
        file=sys.stderr,
        flush=True,
    )
    net = ckpt.build_model().to(dev).eval()
    batch_size = options.batch_size
    if batch_size is None:
        window = (n_in, len(cube.band_names), size, size)
        batch_size = min(MAX_AUTO_WINDOWS, auto_batch_size(net, window, n_out, dev, 0))
    cube_mean, cube_std = (np.asarray(s, dtype=np.float32).reshape(1, 1, -1, 1, 1) for s in (cube.mean, cube.std))
    ckpt_mean, ckpt_std = (np.asarray(s, dtype=np.float32).reshape(1, 1, -1, 1, 1) for s in (ckpt.mean, ckpt.std))
    normal = climatology_mean(cube.data, cube.split["train"])
    data_range = _data_range(cube, part)
    scores = {method: LeadTimeScores(n_out, data_range) for method in METHODS}
    panel: dict[str, np.ndarray] = {}
    done = 0
    with Steps("windows scored", len(windows)) as steps:
        for batch in DataLoader(dataset, batch_size=batch_size):
            physical = batch.numpy() * cube_std + cube_mean
            context, truth = physical[:, :n_in], physical[:, n_in:]
            normalised = torch.from_numpy((context - ckpt_mean) / ckpt_std)
            forecasts = {
                "model": rollout(net, normalised, n_out, dev).numpy() * ckpt_std + ckpt_mean,
                "persistence": persistence(context, n_out),
                "climatology": climatology(
                    np.stack(
                        [normal[:, y0 : y0 + size, x0 : x0 + size] for _, y0, x0 in windows[done : done + len(batch)]]
                    ),
                    n_out,
                ),
            }
            if not panel:
                panel = {"context": context[0, :, 0], "truth": truth[0, :, 0], "forecast": forecasts["model"][0, :, 0]}
            common = np.isfinite(truth) & np.logical_and.reduce([np.isfinite(f) for f in forecasts.values()])
            for method, forecast in forecasts.items():
                scores[method].update(forecast, np.where(common, truth, np.nan))
            done += len(batch)
            steps.advance(len(batch))
    result: dict[str, Any] = {"lead_times": list(range(1, n_out + 1))}
    result.update({method: scores[method].result() for method in METHODS})
    result["skill"] = [
        1.0 - m / p if p > 0 else math.nan for m, p in zip(result["model"]["mse"], result["persistence"]["mse"])
    ]
    t0, y0, x0 = (int(v) for v in windows[0])
    result.update(
        part=part,
        windows=len(windows),
        batch_size=batch_size,
        checkpoint=str(ckpt.path),
        cube=str(cube_path),
        band_names=list(cube.band_names),
        panel_window={"t0": t0, "y0": y0, "x0": x0},
    )
    return result, panel


def evaluate(
    checkpoint: Path,
    cube_path: Path,
    options: EvaluateOptions | None = None,
    json_path: Path | None = None,
    plot_path: Path | None = None,
    panel: Path | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Score the model, print the table on stderr and write the JSON and PNGs asked for; returns (result, paths).

    `plot_path` gets the scores against lead time, `panel` (default: `panel_path(plot_path)`) one window's context,
    truth and forecast."""
    options = options or EvaluateOptions()
    overwrite = options.overwrite
    targets = [Path(json_path)] if json_path is not None else []
    if plot_path is not None:
        plot_path = Path(plot_path)
        panel = Path(panel) if panel is not None else panel_path(plot_path)
        for path in (plot_path, panel):
            if path.suffix.lower() != ".png":
                raise VmrnnError(f"`plot` {path}: must name a .png file")
        targets += [plot_path, panel]
    sources = [Path(cube_path), resolve(checkpoint)]
    for target in targets:
        check_output(target, overwrite, sources)
    with ExitStack() as stack:
        for target in targets:
            stack.enter_context(locked(target))
        result, frames = score_part(checkpoint, cube_path, options)
        print_table(result)
        if json_path is not None:
            with atomic_path(Path(json_path), overwrite) as tmp:
                tmp.write_text(to_json(result))
        if plot_path is not None:
            _plot(result, frames, plot_path, panel, overwrite)
    return result, targets


def _plot(result: dict[str, Any], frames: dict[str, np.ndarray], plot_path: Path, panel: Path, overwrite: bool) -> None:
    """The scores against lead time in plot_path, one window's frames in `panel`."""
    plots.plot_scores(result, plot_path, overwrite)
    window = result["panel_window"]
    title = (
        f"{result['part']} window t0={window['t0']} y0={window['y0']} x0={window['x0']}, band {result['band_names'][0]}"
    )
    plots.plot_panel(frames["context"], frames["truth"], frames["forecast"], panel, title, overwrite)
