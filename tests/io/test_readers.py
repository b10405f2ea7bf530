"""Readers: GeoTIFF series, NetCDF and Zarr to one (time, band, y, x) float32 DataArray."""

import os
import random
import re
import shutil
from datetime import datetime

import cftime
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from conftest import TINY_MODEL
from support.cf_files import day_numbers, gaussian_latitudes, regular_axis, sst_field, unpacked, write_product
from support.series import make_dataset, make_netcdf, make_series_array, make_zarr

from vmrnn_cli import synthetic
from vmrnn_cli.data.grid import Grid
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io import readers
from vmrnn_cli.io.datasets import combine_datasets, read_dataset
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.io.timeparse import time_from_format, time_from_name
from vmrnn_cli.options import PrepareOptions, ReadOptions
from vmrnn_cli.training.loop import train


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


def test_netcdf_lat_ascending_and_lon_0_360_across_greenwich(tmp_path):
    # A grid from 1W to 1.6E stored as 0..360 (seam in the middle) with latitude increasing: rolled to run
    # contiguously (west of the seam shifted by -360) and flipped north-up, the flip recorded.
    path = make_netcdf(tmp_path / "a.nc", n_frames=3, lat_descending=False, lon_0_360=True, west=-1.0)
    raw = xr.open_dataset(path)
    assert raw.lat.values[0] < raw.lat.values[-1] and raw.lon.values.max() > 359
    da = read_rasters([str(path)])
    assert (np.diff(da.x.values) > 0).all() and (np.diff(da.y.values) < 0).all()
    np.testing.assert_allclose(da.x.values[0], -0.975)
    np.testing.assert_allclose(tuple(da.rio.transform())[:6], (0.05, 0, -1.0, 0, -0.05, 46.0))
    assert da.attrs["flipped_axes"] == ["y"]
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


# ---- grids as published products store them: files written by netCDF4 (tests/support/cf_files.py) -------------


def _lons_180(values: np.ndarray) -> np.ndarray:
    """Longitudes in -180..180, float32, as a product in that convention stores them."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values >= 180, values - 360, values).astype(np.float32)


# name: (latitudes and longitudes as stored, the grid read (west, north, x step, y step), the axes flipped)
PRODUCTS = {
    # NOAA OISST v2.1: 0.25 deg, global, latitude ascending, longitude 0..360 (and a one-level zlev dimension)
    "oisst_global": (
        regular_axis(-89.875, 0.25, 720),
        regular_axis(0.125, 0.25, 1440),
        (0.0, 90.0, 0.25, -0.25),
        ["y"],
    ),
    # 0.05 deg float32 axes (the spacing varies in the last digits) over 1440 longitudes, latitude descending
    "float32_0.05": (regular_axis(45.975, -0.05, 100), regular_axis(-179.975, 0.05, 1440), (-180, 46, 0.05, -0.05), []),
    # a box in the Pacific stored 0..360: it stays 0..360
    "pacific_0_360": (regular_axis(-5.875, 0.25, 24), regular_axis(200.125, 0.25, 32), (200, 0, 0.25, -0.25), ["y"]),
    # across Greenwich in 0..360, sorted (the seam in the middle): rolled, west of 0 E negative
    "greenwich_0_360": (
        regular_axis(-0.875, 0.05, 36),
        np.sort(regular_axis(-0.975, 0.05, 52) % np.float32(360)),
        (-1.0, 0.9, 0.05, -0.05),
        ["y"],
    ),
    # across the antimeridian in -180..180, stored west to east: east of 180 E goes on past 180
    "antimeridian": (
        regular_axis(2.975, -0.05, 36),
        _lons_180(regular_axis(179.025, 0.05, 52)),
        (179, 3, 0.05, -0.05),
        [],
    ),
}
EXACT = {"oisst_global", "pacific_0_360"}  # binary fractions: float32 holds them exactly


def _nearest(stored: np.ndarray, read: np.ndarray, circular: bool = False) -> np.ndarray:
    """For each coordinate read, the index of the stored one at the same place (longitudes modulo 360)."""
    distance = read[:, None] - stored.astype(np.float64)[None, :]
    if circular:
        distance = (distance + 180) % 360 - 180
    index = np.abs(distance).argmin(axis=1)
    assert np.abs(distance[np.arange(len(read)), index]).max() < 1e-4
    assert sorted(index) == list(range(len(stored)))  # every stored row/column read once
    return index


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_product_axes_read_as_the_regular_grid_fitted_to_them(tmp_path, capsys, name):
    lats, lons, (west, north, dx, dy), flipped = PRODUCTS[name]
    n_frames = 2 if name == "oisst_global" else 4
    path = write_product(tmp_path / f"{name}.nc", lats, lons, n_frames=n_frames, zlev=name == "oisst_global")
    da = read_rasters([str(path)])
    assert da.shape == (n_frames, 1, len(lats), len(lons)) and da.dtype == np.float32 and da.chunks is not None
    assert da.rio.crs.to_epsg() == 4326 and da.attrs["flipped_axes"] == flipped
    assert da.attrs["source_nodata"] == -32768
    transform = da.rio.transform()
    np.testing.assert_allclose(tuple(transform)[:6], (dx, 0, west, 0, dy, north), rtol=0, atol=1e-5)
    # the coordinates are the transform's centres, and the transform the least-squares line through the stored ones
    ys, xs = Grid.of(da).centres()
    np.testing.assert_allclose(da.y.values, ys, rtol=0, atol=1e-9)
    np.testing.assert_allclose(da.x.values, xs, rtol=0, atol=1e-9)
    iy, ix = _nearest(lats, da.y.values), _nearest(lons, da.x.values, circular=True)
    stored_x = lons[ix] + 360 * np.round((da.x.values - lons[ix]) / 360)
    for stored, step, corner in ((lats[iy], transform.e, transform.f), (stored_x, transform.a, transform.c)):
        slope, first = np.polyfit(np.arange(len(stored)), stored.astype(np.float64), 1)
        np.testing.assert_allclose((step, corner + step / 2), (slope, first), rtol=0, atol=1e-9)
    expected = unpacked(sst_field(day_numbers("2024-01-01", n_frames), lats, lons))[:, iy][:, :, ix]
    _same(da.values[:, 0], expected, atol=1e-5)
    err = capsys.readouterr().err
    if name in EXACT:
        assert err == ""
    else:
        assert err.startswith(f"{path}: coordinate 'lon' deviates from a regular grid by up to ")
        assert all(line.startswith(f"{path}: coordinate ") for line in err.splitlines())


def test_several_files_of_one_product_log_their_grid_once(tmp_path, capsys):
    lats, lons = PRODUCTS["float32_0.05"][:2]
    paths = [
        write_product(tmp_path / f"{d}.nc", lats[:20], lons[:30], n_frames=2, start=d)
        for d in ("2024-01-01", "2024-01-03")
    ]
    da = read_rasters([str(p) for p in paths])
    assert da.sizes["time"] == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(f"{paths[0]}: coordinate ") for line in err)


@pytest.mark.parametrize("jitter, accepted", [(5e-4, True), (3e-3, False)])
def test_spacing_may_vary_by_a_thousandth_of_a_step(tmp_path, capsys, jitter, accepted):
    # centres alternately `jitter` of a step either side of a regular 0.25 deg grid
    lons = (10.125 + 0.25 * (np.arange(40) + jitter * (-1) ** np.arange(40))).astype(np.float32)
    path = write_product(tmp_path / "a.nc", regular_axis(45.875, -0.25, 20), lons, n_frames=2)
    if not accepted:
        with pytest.raises(
            VmrnnError, match=r"a\.nc: coordinate 'lon' is not evenly spaced .*0\.003\d* of a step.*more than 0\.001\)"
        ):
            read_rasters([str(path)])
        return
    da = read_rasters([str(path)])
    np.testing.assert_allclose(tuple(da.rio.transform())[:3], (0.25, 0, 10.0), rtol=0, atol=1e-5)
    assert re.search(
        r"coordinate 'lon' deviates from a regular grid by up to 0\.000[45]\d* of a step", capsys.readouterr().err
    )


def test_gaussian_latitudes_are_refused_and_regridded_on_request(tmp_path, capsys):
    lats, lons = gaussian_latitudes(94), regular_axis(0.0, 1.875, 192)  # NCEP's T62 grid
    path = write_product(tmp_path / "t62.nc", lats, lons, n_frames=4)
    with pytest.raises(VmrnnError, match=r"t62\.nc: coordinate 'lat' is not evenly spaced .*pass `regrid`"):
        read_rasters([str(path)])
    da = combine_datasets([read_dataset(path, None, "netcdf", regrid=True)], [path])
    assert capsys.readouterr().err == (
        f"{path}: resampled 'lat' onto 94 evenly spaced values from 88.5419 to -88.5419 by linear interpolation "
        "(xarray interp; a pixel next to nodata becomes nodata)\n"
    )
    assert da.shape == (4, 1, 94, 192) and da.dtype == np.float32 and da.chunks is not None
    first, last = float(lats[0]), float(lats[-1])
    step = (last - first) / 93
    np.testing.assert_allclose(
        tuple(da.rio.transform())[:6], (1.875, 0, -0.9375, 0, step, first - step / 2), atol=1e-12
    )
    np.testing.assert_allclose(da.y.values, np.linspace(first, last, 94), rtol=0, atol=1e-9)
    # linear interpolation of a smooth field: close to the field at the new latitudes; nodata grows by a pixel at most
    values, field = da.values[:, 0], sst_field(day_numbers("2024-01-01", 4), da.y.values, da.x.values)
    both = ~np.isnan(values) & ~np.isnan(field)
    assert np.abs(values - field)[both].max() < 0.02
    assert not (np.isnan(field) & ~np.isnan(values)).any()
    assert np.isnan(values).sum() < 3 * np.isnan(field).sum()
    # regular axes are left as they are
    regular = write_product(tmp_path / "r.nc", regular_axis(45.875, -0.25, 20), regular_axis(0.125, 0.25, 30))
    assert read_dataset(regular, None, "netcdf", regrid=True).attrs["grid_notes"] == []


# the trips: (latitudes, longitudes, the grid (west, north, x step, y step); None: Gaussian, regridded)
ROUND_TRIPS = {
    "float32_0.05": (regular_axis(45.975, -0.05, 36), regular_axis(-12.975, 0.05, 52), (-13, 46, 0.05, -0.05)),
    "pacific_0_360": PRODUCTS["pacific_0_360"][:3],
    "greenwich_0_360": PRODUCTS["greenwich_0_360"][:3],
    "t62_regrid": (gaussian_latitudes(94), regular_axis(0.0, 1.875, 192), None),
}


@pytest.fixture(scope="module")
def sst_run(tmp_path_factory):
    """A tiny model trained on the Pacific box (0..360 longitudes, latitude ascending, float32 axes)."""
    root = tmp_path_factory.mktemp("sst_run")
    lats, lons = PRODUCTS["pacific_0_360"][:2]
    nc = write_product(root / "pacific.nc", lats, lons, n_frames=12)
    cube = root / "cube.zarr"
    prepare([str(nc)], cube, PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(1, 0, 0)))
    train(cube, root / "run", given=TINY_MODEL)
    return root / "run"


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_products_round_trip_through_prepare_and_predict(cli, sst_run, tmp_path, monkeypatch, name):
    lats, lons, grid = ROUND_TRIPS[name]
    nc = write_product(tmp_path / f"{name}.nc", lats, lons, n_frames=8)
    regrid = grid is None
    extra = ["--regrid"] if regrid else []
    if regrid:
        # Until readers.py hands `regrid` on (read_dataset(f, options.var, kind, regrid=options.regrid)), --regrid
        # reaches read_dataset only this way; with it, this line changes nothing.
        monkeypatch.setattr(
            readers, "read_dataset", lambda *args, **kwargs: read_dataset(*args, **{**kwargs, "regrid": True})
        )
        step = (float(lats[-1]) - float(lats[0])) / (len(lats) - 1)
        grid = (-0.9375, float(lats[0]) - step / 2, 1.875, step)
    west, north, dx, dy = grid
    read = read_dataset(nc, None, "netcdf", regrid=regrid)
    assert read.rio.transform().almost_equals(Affine(dx, 0, west, 0, dy, north), precision=1e-5)
    cube = tmp_path / "cube.zarr"
    frames = ["--input-frames", "3", "--output-frames", "2", "--window", "16", "--split", "1,0,0"]
    code, stdout, err = cli(["prepare", nc, "-o", cube, *frames, *extra])
    assert code == 0, err
    assert stdout == f"{cube}\n"  # what is said about the grid goes to stderr
    data = xr.open_zarr(cube, decode_coords="all")["data"]
    assert data.rio.transform() == read.rio.transform() and data.rio.crs.to_epsg() == 4326
    np.testing.assert_array_equal(data.x.values, read.x.values)  # 0..360 stays 0..360
    predict = ["predict", "-m", sst_run, nc, "--horizon", "2", "--device", "cpu", "--allow-resolution-change", *extra]
    code, stdout, err = cli([*predict, "-o", tmp_path / "cog"])
    assert code == 0, err
    assert len(stdout.split()) == 2
    for tif in stdout.split():
        with rasterio.open(tif) as src:
            assert src.transform == read.rio.transform() and src.crs.to_epsg() == 4326
            assert src.shape == (len(lats), len(lons))
    with rasterio.open(stdout.split()[0]) as src:
        first = src.read(1, masked=True).filled(np.nan)
    code, stdout, err = cli([*predict, "-o", tmp_path / "forecast.nc"])
    assert code == 0, err
    out = xr.open_dataset(tmp_path / "forecast.nc")
    x, y = (out["lon"], out["lat"]) if "lon" in out.coords else (out["x"], out["y"])
    np.testing.assert_allclose(x.values, read.x.values, rtol=0, atol=1e-9)  # the longitudes' convention kept
    np.testing.assert_allclose(np.sort(y.values), np.sort(read.y.values), rtol=0, atol=1e-9)
    # whichever way the NetCDF's latitudes run, its values sit where the (north-up) COG has them
    var = next(key for key, v in out.data_vars.items() if v.ndim >= 3)
    frame = out[var].isel(time=0).squeeze().sortby(y.name, ascending=False)
    _same(frame.values, first, atol=1e-6)
