"""Synthetic test data: deterministic, learnable (changes over time), georeferenced, with holes."""

import numpy as np
import rasterio
import xarray as xr
from support.series import make_dataset, make_netcdf, make_series_array, make_zarr

from vmrnn_cli import synthetic


def test_series_is_deterministic_and_has_holes():
    a = make_series_array(6, 30, 20, bands=2, seed=3)
    b = make_series_array(6, 30, 20, bands=2, seed=3)
    c = make_series_array(6, 30, 20, bands=2, seed=4)
    assert a.shape == (6, 2, 30, 20) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c, equal_nan=True)
    holes = np.isnan(a).mean()
    assert 0.03 < holes < 0.2
    assert np.array_equal(np.isnan(a[:, 0]), np.isnan(a[:, 1]))  # a cloud covers every band
    assert np.nanmin(a) > 0.0 and np.nanmax(a) < 1.5


def test_series_changes_smoothly_over_time():
    a = make_series_array(8, 40, 40, seed=0, hole_fraction=0)
    steps = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 1e-3).all()  # something moves every frame
    assert steps.max() < 0.2 * np.abs(a).mean()  # but not noise: frames are predictable from the last


def test_geotiff_series_matches_array(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path, 3, 30, 20, bands=2, step_days=10, datetime_tag=True)
    assert [p.name for p in paths] == ["scene_2024-01-01.tif", "scene_2024-01-11.tif", "scene_2024-01-21.tif"]
    expected = make_series_array(3, 30, 20, bands=2)
    with rasterio.open(paths[1]) as src:
        assert src.crs.to_epsg() == 32633
        assert (src.height, src.width, src.count) == (30, 20, 2)
        assert src.transform.a == 30.0 and src.transform.e == -30.0
        assert src.tags()["TIFFTAG_DATETIME"] == "2024:01:11 00:00:00"
        raw = src.read(masked=True)
    np.testing.assert_array_equal(raw.mask, np.isnan(expected[1]))
    np.testing.assert_allclose(raw.filled(np.nan), expected[1])


def test_int16_geotiff_records_scale(tmp_path):
    path = synthetic.make_geotiff_series(tmp_path, 1, 10, 12, dtype="int16", scale_factor=1e-4)[0]
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "int16" and src.scales == (1e-4,) and src.nodata == -9999
        raw = src.read(1)
    expected = make_series_array(1, 10, 12)[0, 0]
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(raw[valid] * 1e-4, expected[valid], atol=6e-5)


def test_netcdf_noleap_and_zarr(tmp_path):
    nc = make_netcdf(tmp_path / "a.nc", n_frames=2, step_days=365, start="2024-01-01")
    ds = xr.open_dataset(nc, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    assert ds.time.encoding["calendar"] == "noleap"
    assert ds.time.values[-1].year == 2025 and ds.time.values[-1].dayofyr == 1  # no Feb 29 in 2024
    assert ds.lat.values[0] > ds.lat.values[-1]
    z = make_zarr(tmp_path / "b.zarr", crs="EPSG:32633", n_frames=4)
    zs = xr.open_zarr(z, decode_coords="all")
    assert zs.rio.crs.to_epsg() == 32633 and zs.ndvi.shape == (4, 36, 52)


def test_geotiff_series_passes_shape_of_the_field(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path, 4, 16, 12, period=8, n_blobs=2, hole_fraction=0.0)
    expected = make_series_array(4, 16, 12, period=8, n_blobs=2, hole_fraction=0.0)
    assert not np.allclose(expected, make_series_array(4, 16, 12, n_blobs=2, hole_fraction=0.0))
    with rasterio.open(paths[3]) as src:
        np.testing.assert_allclose(src.read(1), expected[3, 0])
    ds = make_dataset(n_frames=4, height=16, width=12, period=8, n_blobs=2, hole_fraction=0.0)
    np.testing.assert_allclose(ds["ndvi"].values, expected[:, 0])
