"""Forecast scores (MSE, MAE, RMSE, PSNR, SSIM) that ignore NaN/nodata pixels.

A pixel counts only where both the forecast and the truth are finite. SSIM is scikit-image's
`structural_similarity`: NaN pixels are filled with the truth's valid mean in both images (so a hole
looks the same on both sides), the full SSIM map is computed, and its mean is taken over the valid
pixels only, with the same border crop scikit-image applies to its own mean.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def psnr_from_mse(mse_value: float, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB for a given MSE and data range (inf for a perfect forecast)."""
    if not np.isfinite(mse_value):
        return float("nan")
    if mse_value == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse_value))


def ssim_sum(pred: np.ndarray, truth: np.ndarray, data_range: float) -> tuple[float, int]:
    """Sum and count of the SSIM map over the valid, uncropped pixels of one 2-D frame."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    mask = np.isfinite(pred) & np.isfinite(truth)
    side = min(truth.shape)
    win = min(7, side if side % 2 else side - 1)
    if not mask.any() or win < 3:
        return 0.0, 0
    fill = truth[mask].mean()
    _, smap = structural_similarity(
        np.where(mask, pred, fill), np.where(mask, truth, fill), data_range=data_range, win_size=win, full=True
    )
    pad = (win - 1) // 2
    inner = (slice(pad, truth.shape[0] - pad), slice(pad, truth.shape[1] - pad))
    return float(smap[inner][mask[inner]].sum()), int(mask[inner].sum())


class LeadTimeScores:
    """Running per-lead-time sums over many forecast windows, so a split of any size is scored in one pass.

    MSE, MAE and SSIM are pooled over all valid pixels of all windows and bands; RMSE is the square
    root of the pooled MSE; PSNR is computed per band from that band's pooled MSE and data range,
    then averaged over bands.
    """

    def __init__(self, lead_times: int, data_range: np.ndarray) -> None:
        self.data_range = np.asarray(data_range, dtype=np.float64).reshape(-1)
        bands = self.data_range.size
        self.sse = np.zeros((lead_times, bands))
        self.sae = np.zeros((lead_times, bands))
        self.count = np.zeros((lead_times, bands))
        self.ssim_sum = np.zeros((lead_times, bands))
        self.ssim_count = np.zeros((lead_times, bands))

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """Add a batch of forecasts and truths shaped (N, lead, band, H, W), in physical units."""
        pred = np.asarray(pred, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.float64)
        if pred.shape != truth.shape or pred.ndim != 5 or pred.shape[1:3] != self.sse.shape:
            raise ValueError(
                f"expected (N, {self.sse.shape[0]}, {self.sse.shape[1]}, H, W) arrays, "
                f"got {pred.shape} and {truth.shape}"
            )
        mask = np.isfinite(pred) & np.isfinite(truth)
        diff = np.where(mask, pred - truth, 0.0)
        self.sse += (diff**2).sum(axis=(0, 3, 4))
        self.sae += np.abs(diff).sum(axis=(0, 3, 4))
        self.count += mask.sum(axis=(0, 3, 4))
        for n in range(pred.shape[0]):
            for lead in range(pred.shape[1]):
                for band in range(pred.shape[2]):
                    s, c = ssim_sum(pred[n, lead, band], truth[n, lead, band], self.data_range[band])
                    self.ssim_sum[lead, band] += s
                    self.ssim_count[lead, band] += c

    def result(self) -> dict[str, list[float]]:
        """Scores per lead time: {"mse": [...], "mae": [...], "rmse": [...], "ssim": [...], "psnr": [...]}."""
        with np.errstate(invalid="ignore", divide="ignore"):
            count = self.count.sum(axis=1)
            mse_lead = self.sse.sum(axis=1) / count
            mae_lead = self.sae.sum(axis=1) / count
            ssim_lead = self.ssim_sum.sum(axis=1) / self.ssim_count.sum(axis=1)
            band_mse = self.sse / self.count
        psnr_lead = [float(np.mean([psnr_from_mse(m, r) for m, r in zip(row, self.data_range)])) for row in band_mse]
        return {
            "mse": mse_lead.tolist(),
            "mae": mae_lead.tolist(),
            "rmse": np.sqrt(mse_lead).tolist(),
            "ssim": ssim_lead.tolist(),
            "psnr": psnr_lead,
        }
