"""Scores against hand-computed values on tiny arrays, NaN masking included."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from support import metrics_reference as reference

from vmrnn_cli.verify import metrics


def test_pointwise_scores_by_hand():
    truth = np.array([[0.0, 1.0], [2.0, 3.0]])
    pred = np.array([[1.0, 1.0], [2.0, 5.0]])  # errors 1, 0, 0, 2
    assert reference.mse(pred, truth) == pytest.approx(5 / 4)
    assert reference.mae(pred, truth) == pytest.approx(3 / 4)
    assert reference.rmse(pred, truth) == pytest.approx(math.sqrt(5 / 4))
    assert reference.psnr(pred, truth, data_range=3.0) == pytest.approx(10 * math.log10(9 / 1.25))


def test_nan_pixels_are_left_out():
    truth = np.array([[0.0, np.nan], [2.0, 3.0]])
    pred = np.array([[1.0, 100.0], [np.nan, 5.0]])  # valid pairs: (1,0) and (5,3)
    assert reference.mse(pred, truth) == pytest.approx((1 + 4) / 2)
    assert reference.mae(pred, truth) == pytest.approx((1 + 2) / 2)
    assert math.isnan(reference.mse(np.full(3, np.nan), np.zeros(3)))


def test_psnr_perfect_forecast_is_infinite():
    truth = np.arange(4.0)
    assert reference.psnr(truth, truth, data_range=3.0) == math.inf


def test_ssim_matches_scikit_image_without_nan():
    rng = np.random.default_rng(0)
    truth = rng.random((16, 12))
    pred = truth + 0.1 * rng.standard_normal((16, 12))
    expected = structural_similarity(pred, truth, data_range=1.0)
    assert reference.ssim(pred, truth, data_range=1.0) == pytest.approx(expected)


def test_ssim_ignores_what_lies_under_nodata():
    rng = np.random.default_rng(1)
    truth = rng.random((16, 16))
    truth[4:8, 4:8] = np.nan
    assert reference.ssim(truth, truth, data_range=1.0) == pytest.approx(1.0)
    pred_a, pred_b = truth.copy(), truth.copy()
    pred_a[4:8, 4:8], pred_b[4:8, 4:8] = 0.0, 50.0  # only the hole differs
    assert reference.ssim(pred_a, truth, 1.0) == pytest.approx(reference.ssim(pred_b, truth, 1.0))
    assert reference.ssim(pred_a + 0.3, truth, 1.0) < 0.99


def test_lead_time_scores_pool_windows_and_bands():
    truth = np.zeros((2, 3, 2, 8, 8))
    pred = np.zeros_like(truth)
    pred[:, 0] += 1.0  # lead 1: error 1 everywhere
    pred[0, 1, 0] += 2.0  # lead 2: error 2 in one of the four (window, band) frames
    truth[1, 2, 1, :4] = np.nan  # lead 3: half of one frame missing, forecast perfect
    scores = metrics.LeadTimeScores(lead_times=3, data_range=np.array([4.0, 2.0]))
    scores.update(pred[:1], truth[:1])
    scores.update(pred[1:], truth[1:])
    out = scores.result()
    assert out["mse"] == pytest.approx([1.0, 1.0, 0.0])  # lead 2: 4 on a quarter of the pixels
    assert out["mae"] == pytest.approx([1.0, 0.5, 0.0])
    assert out["rmse"] == pytest.approx([1.0, 1.0, 0.0])
    # PSNR per band then averaged: lead 1 has MSE 1 in both bands; lead 2 has MSE 2 in band 0, 0 in band 1
    assert out["psnr"][0] == pytest.approx((10 * math.log10(16) + 10 * math.log10(4)) / 2)
    assert out["psnr"][1] == math.inf
    assert out["ssim"][2] == pytest.approx(1.0)
    assert out["ssim"][0] < 1.0
    assert set(out) == {"mse", "mae", "rmse", "ssim", "psnr"}


def test_lead_time_scores_rejects_wrong_shape():
    scores = metrics.LeadTimeScores(lead_times=2, data_range=np.array([1.0]))
    with pytest.raises(ValueError):
        scores.update(np.zeros((1, 3, 1, 8, 8)), np.zeros((1, 3, 1, 8, 8)))
