"""Baselines on series whose answer is known."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from vmrnn_cli.verify import baselines


def test_persistence_repeats_last_frame():
    context = np.arange(3 * 1 * 2 * 2, dtype=np.float32).reshape(3, 1, 2, 2)
    out = baselines.persistence(context, horizon=4)
    assert out.shape == (4, 1, 2, 2)
    for lead in range(4):
        np.testing.assert_array_equal(out[lead], context[-1])


def test_persistence_falls_back_to_last_observed_value():
    context = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1).repeat(2, axis=3)  # (T=3, C=1, H=1, W=2)
    context[2, 0, 0, 0] = np.nan  # pixel 0 missing in the last frame -> value of frame 1
    context[:, 0, 0, 1] = np.nan  # pixel 1 never observed -> stays NaN
    out = baselines.persistence(context[None], horizon=2)  # with a batch axis
    assert out.shape == (1, 2, 1, 1, 2)
    np.testing.assert_array_equal(out[0, :, 0, 0, 0], [2.0, 2.0])
    assert np.isnan(out[0, :, 0, 0, 1]).all()


def test_climatology_is_training_mean_per_pixel():
    # A ramp over time in the training split (t = 0..3, mean 1.5) and large values afterwards
    # that must not leak into the climatology.
    values = np.concatenate([np.arange(4.0), np.full(2, 100.0)]).astype(np.float32)
    data = np.broadcast_to(values[:, None, None, None], (6, 2, 3, 2)).copy()
    data[:, 1] *= 2.0  # band 1 is twice band 0
    data[1, 0, 0, 0] = np.nan  # a hole: mean of 0, 2, 3
    data[:4, 0, 2, 1] = np.nan  # never observed in training
    da = xr.DataArray(data, dims=("time", "band", "y", "x"), coords={"time": pd.date_range("2024-01-01", periods=6)})
    mean = baselines.climatology_mean(da, (0, 4))
    assert mean.shape == (2, 3, 2)
    assert mean[0, 1, 1] == pytest.approx(1.5)
    assert mean[1, 1, 1] == pytest.approx(3.0)
    assert mean[0, 0, 0] == pytest.approx(5 / 3)
    assert np.isnan(mean[0, 2, 1])
    forecast = baselines.climatology(mean, horizon=3)
    assert forecast.shape == (3, 2, 3, 2)
    np.testing.assert_array_equal(forecast[2], mean)
