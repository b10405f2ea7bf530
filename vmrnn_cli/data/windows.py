"""The time split and the window index of a cube: which (t0, y0, x0) windows hold enough valid data."""

from __future__ import annotations

import numpy as np

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import PARTS

MIN_VALID_FRACTION = 0.5


def split_ranges(
    n_frames: int, fractions: tuple[float, float, float], window: int, source: str
) -> dict[str, tuple[int, int]]:
    """Contiguous (start, stop) time ranges per part; a non-empty part must hold at least one window."""
    n_train = round(fractions[0] * n_frames)
    n_val = round(fractions[1] * n_frames)
    bounds = [0, n_train, n_train + n_val, n_frames]
    ranges = {part: (bounds[i], bounds[i + 1]) for i, part in enumerate(PARTS)}
    for part, fraction in zip(PARTS, fractions):
        length = ranges[part][1] - ranges[part][0]
        if fraction > 0 and length < window:
            raise VmrnnError(
                f"{source}: the {part} part gets {length} of {n_frames} frames, fewer than one window of "
                f"input+output = {window} frames; change `split` (e.g. `split` 1,0,0 holds out nothing) "
                "or use fewer `input_frames`/`output_frames`"
            )
    return ranges


def box_sums(cells: np.ndarray, box: int, step: int) -> np.ndarray:
    """Per frame, sums of `box` x `box` cells at every window position (every `step` cells)."""
    integral = np.zeros((cells.shape[0], cells.shape[1] + 1, cells.shape[2] + 1), dtype=np.int64)
    integral[:, 1:, 1:] = cells.cumsum(axis=1).cumsum(axis=2)
    ys = np.arange(0, cells.shape[1] - box + 1, step)
    xs = np.arange(0, cells.shape[2] - box + 1, step)
    y0, x0 = ys[:, None], xs[None, :]
    return integral[:, y0 + box, x0 + box] - integral[:, y0, x0 + box] - integral[:, y0 + box, x0] + integral[:, y0, x0]


def window_index(
    frame_counts: np.ndarray,
    ranges: dict[str, tuple[int, int]],
    window: int,
    values_per_frame: int,
    stride: int,
    source: str,
) -> dict[str, np.ndarray]:
    """(t0, y0, x0) of every window wholly inside its part with >= MIN_VALID_FRACTION valid values."""
    cumulative = np.concatenate([np.zeros((1,) + frame_counts.shape[1:], np.int64), frame_counts.cumsum(axis=0)])
    window_counts = cumulative[window:] - cumulative[:-window]
    good = window_counts >= MIN_VALID_FRACTION * window * values_per_frame
    windows = {}
    for part, (start, stop) in ranges.items():
        t0, iy, ix = np.nonzero(good[start : max(start, stop - window + 1)])
        windows[part] = np.stack([t0 + start, iy * stride, ix * stride], axis=1).astype(np.int64)
        if stop > start and len(windows[part]) == 0:
            raise VmrnnError(
                f"{source}: no window of the {part} part has >= {MIN_VALID_FRACTION:.0%} valid pixels "
                "(too much nodata); check the nodata value or change `split`"
            )
    return windows
