"""Plain one-call scores over two arrays: the oracle `LeadTimeScores`' pooled sums are checked against."""

import numpy as np

from vmrnn_cli.verify.metrics import psnr_from_mse, ssim_sum


def _valid(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the float64 differences at the pixels where both arrays are finite."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"forecast shape {pred.shape} differs from truth shape {truth.shape}")
    mask = np.isfinite(pred) & np.isfinite(truth)
    return (pred - truth)[mask], mask


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error over the pixels valid in both arrays (NaN if none is)."""
    diff, _ = _valid(pred, truth)
    return float(np.mean(diff**2)) if diff.size else float("nan")


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over the pixels valid in both arrays (NaN if none is)."""
    diff, _ = _valid(pred, truth)
    return float(np.mean(np.abs(diff))) if diff.size else float("nan")


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error over the pixels valid in both arrays."""
    return float(np.sqrt(mse(pred, truth)))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB over the valid pixels; data_range is the truth's max - min."""
    return psnr_from_mse(mse(pred, truth), data_range)


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Mean SSIM of (..., H, W) frames, each frame's SSIM map averaged over its valid pixels, pooled."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"forecast shape {pred.shape} differs from truth shape {truth.shape}")
    total, count = 0.0, 0
    for p, t in zip(pred.reshape(-1, *pred.shape[-2:]), truth.reshape(-1, *truth.shape[-2:])):
        s, n = ssim_sum(p, t, data_range)
        total, count = total + s, count + n
    return total / count if count else float("nan")
