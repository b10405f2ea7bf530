"""PNG figures for `evaluate`: scores against lead time, and one window's context / truth / forecast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vmrnn_cli.io.atomic import atomic_path
from vmrnn_cli.io.outputs import WRITTEN_BY
from vmrnn_cli.verify.report import METHODS

PANEL_COLUMNS = 6


def _save(fig: Figure, path: Path, overwrite: bool) -> None:
    """Write the figure atomically as PNG."""
    with atomic_path(Path(path), overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": WRITTEN_BY})


def plot_scores(result: dict, path: Path, overwrite: bool = False) -> None:
    """Plot every score and the skill against lead time, one line per method."""
    leads = result["lead_times"]
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    labels = {"mse": "MSE", "mae": "MAE", "rmse": "RMSE", "ssim": "SSIM", "psnr": "PSNR (dB)"}
    for ax, (score, label) in zip(axes, labels.items()):
        for method in METHODS:
            values = [np.nan if v is None else v for v in result[method][score]]
            ax.plot(leads, values, marker="o", label=method)
        ax.set_title(label)
    skill = [np.nan if v is None else v for v in result["skill"]]
    axes[5].plot(leads, skill, marker="o", color="black")
    axes[5].axhline(0.0, color="grey", linewidth=0.8)
    axes[5].set_title("skill = 1 - MSE / MSE persistence")
    for ax in axes:
        ax.set_xlabel("lead time (frames)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend()
    _save(fig, path, overwrite)


def plot_panel(
    context: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    path: Path,
    title: str = "",
    overwrite: bool = False,
) -> None:
    """Draw (H, W) frames in three rows: the last context frames, the truth and the forecast, one colour scale."""
    context, truth, forecast = (np.asarray(a, dtype=np.float32) for a in (context, truth, forecast))
    context = context[-PANEL_COLUMNS:]
    truth, forecast = truth[:PANEL_COLUMNS], forecast[:PANEL_COLUMNS]
    columns = max(len(context), len(truth))
    shown = np.concatenate([context.ravel(), truth.ravel()])
    shown = shown[np.isfinite(shown)]
    vmin, vmax = np.percentile(shown, [1, 99]) if shown.size else (0.0, 1.0)
    fig = Figure(figsize=(2.2 * columns + 1, 7), layout="constrained")
    axes = fig.subplots(3, columns, squeeze=False)
    back = [f"t-{len(context) - 1 - i}" if i < len(context) - 1 else "t" for i in range(len(context))]
    ahead = [f"t+{i + 1}" for i in range(len(truth))]
    rows = [("context", context, back), ("truth", truth, ahead), ("forecast", forecast, ahead)]
    image = None
    for row, (name, frames, labels) in enumerate(rows):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(frames):
                ax.set_axis_off()
                continue
            image = ax.imshow(frames[col], vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set_title(labels[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(name)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6)
    if title:
        fig.suptitle(title)
    _save(fig, path, overwrite)
