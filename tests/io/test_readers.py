"""Readers: GeoTIFF series, NetCDF and Zarr to one (time, band, y, x) float32 DataArray."""

import os
import random
import shutil
from datetime import datetime

import cftime
import numpy as np
import pytest
import rasterio
import xarray as xr
from support.series import make_dataset, make_netcdf, make_series_array, make_zarr

from vmrnn_cli import synthetic
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.io.timeparse import time_from_format, time_from_name
from vmrnn_cli.options import ReadOptions


def _same(actual: np.ndarray, expected: np.ndarray, atol: float = 0.0) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def test_geotiff_series_projected_non_square_with_holes(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path, 5, 48, 40, crs="EPSG:32633", step_days=16)
    random.Random(0).shuffle(paths)
    da = read_rasters([str(p) for p in paths])
    assert da.dims == ("time", "band", "y", "x") and da.shape == (5, 1, 48, 40) and da.dtype == np.float32
    assert da.chunks is not None  # lazy
    assert da.rio.crs.to_epsg() == 32633
    assert tuple(da.rio.transform())[:6] == (30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)
    assert list(da.time.values) == [np.datetime64(f"2024-{d}") for d in ("01-01", "01-17", "02-02", "02-18", "03-05")]
    assert da.attrs["source_nodata"] == -9999
    _same(da.values, make_series_array(5, 48, 40))


def test_quoted_glob_int16_scale_and_multiband_selection(tmp_path):
    synthetic.make_geotiff_series(tmp_path, 4, 20, 30, bands=3, dtype="int16", scale_factor=1e-4, add_offset=0.1)
    expected = make_series_array(4, 20, 30, bands=3)
    da = read_rasters([str(tmp_path / "*.tif")])
    _same(da.values, expected, atol=6e-5)
    picked = read_rasters([str(tmp_path / "scene_*.tif")], ReadOptions(bands=[3, 1]))
    assert picked.attrs["band_names"] == ["band3", "band1"]
    _same(picked.values, expected[:, [2, 0]], atol=6e-5)
    with pytest.raises(VmrnnError, match="3 band.*`bands` 4"):
        read_rasters([str(tmp_path / "*.tif")], ReadOptions(bands=[4]))


@pytest.mark.parametrize("cut", [10, 150])
def test_truncated_tags_are_refused_not_read_as_missing(tmp_path, cut):
    # The IFD's tag data at the end of a plain GeoTIFF: GDAL reads the cut file with no CRS or nodata, silently.
    paths = synthetic.make_geotiff_series(tmp_path, 3, 20, 24)
    os.truncate(paths[1], os.path.getsize(paths[1]) - cut)
    with pytest.raises(VmrnnError, match=rf"{paths[1].name}: truncated or damaged TIFF"):
        read_rasters([str(p) for p in paths])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ndvi_2024-03-05.tif", datetime(2024, 3, 5)),
        ("T32TQM_20240305_B04.tif", datetime(2024, 3, 5)),
        ("S2A_MSIL2A_20240305T1200_N0510.tif", datetime(2024, 3, 5, 12, 0)),
        ("radar_2024-03-05T12:00.tif", datetime(2024, 3, 5, 12, 0)),
        ("S2_20240305T101021_x_20240306T130000", datetime(2024, 3, 5, 10, 10, 21)),
        ("scene_123456789.tif", None),
        ("2024-13-45_20240102.tif", datetime(2024, 1, 2)),
    ],
)
def test_time_from_name(name, expected):
    assert time_from_name(name) == expected


def test_time_format_and_tiff_tag(tmp_path):
    a = synthetic.make_geotiff_series(tmp_path / "a", 3, 8, 8, name_format="ndvi_%d%m%Y.tif")
    da = read_rasters([str(p) for p in a], ReadOptions(time_format="%d%m%Y"))
    assert str(da.time.values[1])[:10] == "2024-01-17"
    assert time_from_format("doy_2024_065.tif", "%Y_%j") == datetime(2024, 3, 5)
    b = synthetic.make_geotiff_series(tmp_path / "b", 3, 8, 8, name_format="frame_%j.tif", datetime_tag=True)
    # "frame_017.tif" holds no ISO date, so the TIFF tag gives the time
    assert str(read_rasters([str(p) for p in b]).time.values[2])[:10] == "2024-02-02"
    c = synthetic.make_geotiff_series(tmp_path / "c", 2, 8, 8, name_format="frame_%j.tif")
    with pytest.raises(VmrnnError, match=r"frame_001\.tif: no date in the file name.*`time_format`"):
        read_rasters([str(p) for p in c])


def test_netcdf_noleap_latlon(tmp_path):
    path = make_netcdf(tmp_path / "a.nc", calendar="noleap", n_frames=6, height=36, width=52)
    da = read_rasters([str(path)])
    assert da.shape == (6, 1, 36, 52) and da.dtype == np.float32
    assert da.rio.crs.to_epsg() == 4326
    assert isinstance(da.time.values[0], cftime.DatetimeNoLeap)
    transform = da.rio.transform()
    assert transform.e < 0 and transform.a > 0
    np.testing.assert_allclose([transform.c, transform.f, transform.a], [10.0, 46.0, 0.05])
    _same(da.values, make_series_array(6, 36, 52))


def test_netcdf_lat_ascending_and_lon_0_360_are_normalised(tmp_path):
    # A grid from 1W to 1.6E stored as 0..360 (seam in the middle) with latitude increasing.
    path = make_netcdf(tmp_path / "a.nc", n_frames=3, lat_descending=False, lon_0_360=True, west=-1.0)
    raw = xr.open_dataset(path)
    assert raw.lat.values[0] < raw.lat.values[-1] and raw.lon.values.max() > 359
    da = read_rasters([str(path)])
    assert (np.diff(da.x.values) > 0).all() and (np.diff(da.y.values) < 0).all()
    np.testing.assert_allclose(da.x.values[0], -0.975)
    np.testing.assert_allclose(tuple(da.rio.transform())[:6], (0.05, 0, -1.0, 0, -0.05, 46.0))
    _same(da.values, make_series_array(3, 36, 52))


def test_netcdf_grid_mapping_multiband_and_var(tmp_path):
    path = make_netcdf(tmp_path / "a.nc", calendar="standard", crs="EPSG:32633", bands=3, n_frames=4)
    da = read_rasters([str(path)], ReadOptions(var="ndvi"))
    assert da.rio.crs.to_epsg() == 32633 and da.shape == (4, 3, 36, 52)
    assert tuple(da.rio.transform())[:6] == (30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)
    _same(da.values, make_series_array(4, 36, 52, bands=3))
    with pytest.raises(VmrnnError, match=r"a\.nc: no variable 'sst'; it has ndvi"):
        read_rasters([str(path)], ReadOptions(var="sst"))


def test_netcdf_two_variables_need_var(tmp_path):
    ds = make_dataset(n_frames=3)
    ds["other"] = ds["ndvi"] * 2
    ds.to_netcdf(tmp_path / "two.nc")
    with pytest.raises(VmrnnError, match="two.nc: cannot tell which variable.*ndvi, other.*`var`"):
        read_rasters([str(tmp_path / "two.nc")])
    np.testing.assert_allclose(
        read_rasters([str(tmp_path / "two.nc")], ReadOptions(var="other")).values[:, 0],
        2 * ds["ndvi"].values,
        rtol=1e-6,
    )


def test_zarr_store(tmp_path):
    path = make_zarr(tmp_path / "a.zarr", crs="EPSG:3035", n_frames=5, height=20, width=24)
    da = read_rasters([str(path)])
    assert da.rio.crs.to_epsg() == 3035 and da.shape == (5, 1, 20, 24)
    _same(da.values, make_series_array(5, 20, 24))


def test_several_netcdf_files_concatenate_in_time_order(tmp_path):
    full = make_dataset(n_frames=6)
    full.isel(time=slice(3, 6)).to_netcdf(tmp_path / "late.nc")
    full.isel(time=slice(0, 3)).to_netcdf(tmp_path / "early.nc")
    da = read_rasters([str(tmp_path / "late.nc"), str(tmp_path / "early.nc")])
    _same(da.values[:, 0], full["ndvi"].values)


# ---- bad input: one VmrnnError naming the file ------------------------------------------------


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(VmrnnError, match=r"nope\.tif: no such file"):
        read_rasters([str(tmp_path / "nope.tif")])
    with pytest.raises(VmrnnError, match=r"\*\.tif: no file matches"):
        read_rasters([str(tmp_path / "*.tif")])


def test_not_a_raster_and_truncated(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path, 3, 300, 280)
    text = tmp_path / "notes_2025-01-01.tif"
    text.write_text("hello")
    with pytest.raises(VmrnnError, match=r"notes_2025-01-01\.tif: not a readable raster"):
        read_rasters([str(p) for p in paths] + [str(text)])
    os.truncate(paths[1], os.path.getsize(paths[1]) // 2)
    with pytest.raises(VmrnnError, match=str(paths[1].name)):
        read_rasters([str(p) for p in paths])


def test_truncated_cog_with_header_first(tmp_path):
    # Header in front (as in a COG): opening works, the cut is caught from the block offsets.
    src = synthetic.make_geotiff_series(tmp_path / "src", 1, 300, 280)[0]
    cog = tmp_path / "cog_2024-01-01.tif"
    with rasterio.open(src) as s:
        profile = s.profile | {"driver": "COG"}
        profile.pop("blockxsize"), profile.pop("blockysize"), profile.pop("tiled"), profile.pop("interleave", None)
        with rasterio.open(cog, "w", **profile) as d:
            d.write(s.read())
    os.truncate(cog, os.path.getsize(cog) - 1000)
    with pytest.raises(VmrnnError, match=r"cog_2024-01-01\.tif: truncated"):
        read_rasters([str(cog)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"crs": "EPSG:32632"}, "CRS EPSG:32632 differs from EPSG:32633"),
        ({"height": 21}, "shape 21x16 differs from 20x16"),
        ({"bands": 2}, "band count 2 differs from 1"),
        ({"origin": (500030.0, 5000000.0)}, "transform .* differs"),
    ],
)
def test_mismatched_series(tmp_path, kwargs, message):
    good = synthetic.make_geotiff_series(tmp_path, 3, 20, 16)
    odd = synthetic.make_geotiff_series(
        tmp_path / "odd", 1, **({"height": 20, "width": 16} | kwargs), start="2025-01-01"
    )
    with pytest.raises(VmrnnError, match=rf"{odd[0]}: {message}"):
        read_rasters([str(p) for p in good + odd])


def test_duplicate_times(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path, 3, 10, 10)
    shutil.copy(paths[1], tmp_path / "copy_of_20240117.tif")
    with pytest.raises(VmrnnError, match="time 2024-01-17.* duplicates"):
        read_rasters([str(tmp_path / "*.tif")])


def test_garbage_netcdf_zarr_and_plain_directory(tmp_path):
    (tmp_path / "bad.nc").write_bytes(b"CDF\x01 truncated")
    with pytest.raises(VmrnnError, match=r"bad\.nc: not a readable NetCDF file") as info:
        read_rasters([str(tmp_path / "bad.nc")])
    assert "\n" not in str(info.value)
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / ".zgroup").write_text("{not json")
    with pytest.raises(VmrnnError, match=r"bad\.zarr: not a readable Zarr store"):
        read_rasters([str(tmp_path / "bad.zarr")])
    synthetic.make_geotiff_series(tmp_path / "scenes", 2, 8, 8)
    with pytest.raises(VmrnnError, match=r"scenes: is a directory but not a Zarr store.*scenes/\*\.tif"):
        read_rasters([str(tmp_path / "scenes")])


def test_mixed_kinds(tmp_path):
    tif = synthetic.make_geotiff_series(tmp_path, 1, 10, 10)[0]
    nc = make_netcdf(tmp_path / "a.nc", n_frames=2)
    with pytest.raises(VmrnnError, match="mix geotiff and netcdf"):
        read_rasters([str(tif), str(nc)])
