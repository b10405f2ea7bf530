"""`vmrnn prepare`: the cube read back with plain xarray + rioxarray, split, statistics, windows, errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import xarray as xr
from support.series import make_netcdf, make_series_array

from vmrnn_cli import synthetic
from vmrnn_cli.data.cube import open_cube
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.options import PARTS, PrepareOptions

SMALL = ["--input-frames", "3", "--output-frames", "2", "--window", "16"]


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture
def series(tmp_path):
    synthetic.make_geotiff_series(tmp_path / "in", 30, 40, 56, bands=2, dtype="int16", step_days=5)
    return tmp_path / "in"


def test_cube_reads_back_with_plain_xarray_and_rioxarray(cli, series, tmp_path):
    out = tmp_path / "cube.zarr"
    code, stdout, stderr = cli(
        ["prepare", str(series / "*.tif"), "-o", out, *SMALL, "--stride", "8", "--split", "0.6,0.2,0.2"]
    )
    assert code == 0, stderr
    assert stdout == f"{out}\n"
    assert "30 frames x 2 band(s) x 40 x 56 px" in stderr
    ds = xr.open_zarr(out, decode_coords="all")
    assert ds.rio.crs.to_epsg() == 32633
    assert ds["data"].rio.crs.to_epsg() == 32633
    assert ds["data"].encoding["grid_mapping"] == "spatial_ref"
    assert tuple(ds["data"].rio.transform())[:6] == (30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)
    assert ds["data"].dims == ("time", "band", "y", "x") and ds["data"].dtype == np.float32
    assert str(ds.time.values[1])[:10] == "2024-01-06"
    expected = make_series_array(30, 40, 56, bands=2)
    data = ds["data"].values
    np.testing.assert_array_equal(np.isnan(data), np.isnan(expected))
    np.testing.assert_allclose(data, expected, atol=6e-5)
    assert ds["data"].encoding["chunks"] == (5, 2, 16, 16)  # input+output frames, all bands, window x window
    assert ds.attrs["split"] == {"train": [0, 18], "val": [18, 24], "test": [24, 30]}
    train = expected[:18]
    np.testing.assert_allclose(ds["mean"].values, np.nanmean(train, axis=(0, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(ds["std"].values, np.nanstd(train, axis=(0, 2, 3)), rtol=1e-4)


def test_windows_match_brute_force_and_never_straddle_parts(series, tmp_path):
    out = tmp_path / "cube.zarr"
    prepare(
        [str(series / "*.tif")],
        out,
        PrepareOptions(input_frames=3, output_frames=2, window=16, stride=12, split=(0.6, 0.2, 0.2)),
    )
    cube = open_cube(out)
    data = make_series_array(30, 40, 56, bands=2)
    length, patch = 5, 16
    bounds = [cube.split[p] for p in PARTS]
    assert bounds[0][0] == 0 and bounds[0][1] == bounds[1][0] and bounds[1][1] == bounds[2][0] and bounds[2][1] == 30
    for part, (start, stop) in cube.split.items():
        windows = cube.windows(part)
        assert windows.dtype == np.int64 and windows.shape[1] == 3 and len(windows) > 0
        assert (windows[:, 0] >= start).all() and (windows[:, 0] + length <= stop).all()  # no leakage
        expected = {
            (t, y, x)
            for t in range(start, stop - length + 1)
            for y in range(0, 40 - patch + 1, 12)
            for x in range(0, 56 - patch + 1, 12)
            if (~np.isnan(data[t : t + length, :, y : y + patch, x : x + patch])).mean() >= 0.5
        }
        assert set(map(tuple, windows.tolist())) == expected


def test_windows_skip_mostly_empty_patches(tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path / "in", 8, 32, 32, nodata=-9999)
    for path in paths:  # blank the top-left patch in every frame
        with rasterio.open(path, "r+") as dst:
            values = dst.read(1)
            values[:16, :16] = -9999
            dst.write(values, 1)
    prepare(
        [str(tmp_path / "in") + "/*.tif"],
        tmp_path / "c.zarr",
        PrepareOptions(input_frames=2, output_frames=2, window=16, split=(1, 0, 0)),
    )
    windows = open_cube(tmp_path / "c.zarr").windows("train")
    assert len(windows) == 5 * 3
    assert not ((windows[:, 1] == 0) & (windows[:, 2] == 0)).any()


def test_netcdf_noleap_cube_and_open_cube(cli, tmp_path):
    nc = make_netcdf(tmp_path / "a.nc", calendar="noleap", n_frames=12, lat_descending=False)
    out = tmp_path / "cube.zarr"
    code, _, stderr = cli(["prepare", nc, "-o", out, *SMALL, "--split", "1,0,0"])
    assert code == 0, stderr
    cube = open_cube(out)
    assert cube.grid.crs.to_epsg() == 4326 and cube.grid.transform.e < 0
    assert cube.data.time.encoding.get("calendar") == "noleap" or cube.data.time.dt.calendar == "noleap"
    assert cube.split == {"train": (0, 12), "val": (12, 12), "test": (12, 12)}
    assert cube.windows("val").shape == (0, 3) and len(cube.windows("train")) > 0
    assert cube.band_names == ["ndvi"] and cube.input_frames == 3 and cube.output_frames == 2
    assert cube.window == 16 and cube.stride == 16


def test_overwrite(cli, series, tmp_path):
    out = tmp_path / "cube.zarr"
    args = ["prepare", str(series / "*.tif"), "-o", out, *SMALL, "--split", "1,0,0"]
    assert cli(args)[0] == 0
    code, stdout, stderr = cli(args[:-4] + ["--window", "8", "--split", "1,0,0"])
    assert code == 1 and stdout == ""
    assert stderr == f"vmrnn: error: {out}: already exists; pass --overwrite to replace it\n"
    assert open_cube(out).window == 16
    code, _, stderr = cli(args[:-4] + ["--window", "8", "--split", "1,0,0", "--overwrite"])
    assert code == 0, stderr
    assert open_cube(out).window == 8
    assert leftovers(tmp_path) == []


def test_zarr_v2_default_is_read_by_gdal(series, tmp_path):
    out = tmp_path / "cube.zarr"
    prepare([str(series / "*.tif")], out, PrepareOptions(input_frames=3, output_frames=2, window=16, split=(1, 0, 0)))
    assert (out / ".zgroup").exists() and (out / "data" / ".zarray").exists()
    with rasterio.open(f'ZARR:"{out}":/data') as src:
        assert src.crs.to_epsg() == 32633
        assert (src.width, src.height) == (56, 40)
        assert tuple(src.transform)[:6] == (30.0, 0.0, 500000.0, 0.0, -30.0, 5000000.0)


def test_zarr_v3_on_request(series, tmp_path):
    out = tmp_path / "cube.zarr"
    prepare(
        [str(series / "*.tif")],
        out,
        PrepareOptions(input_frames=3, output_frames=2, window=16, split=(1, 0, 0), zarr_format=3),
    )
    assert (out / "zarr.json").exists()
    assert xr.open_zarr(out, decode_coords="all").rio.crs.to_epsg() == 32633
    assert open_cube(out).windows("train").shape[1] == 3


def test_console_script_stdout_is_only_the_path(series, tmp_path):
    out = tmp_path / "cube.zarr"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmrnn_cli",
            "prepare",
            str(series / "*.tif"),
            "-o",
            str(out),
            *SMALL,
            "--split",
            "1,0,0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"


# ---- bad input: exit 1, one line on stderr naming the file, nothing left behind --------------------


def _bad_inputs(tmp_path):
    good = synthetic.make_geotiff_series(tmp_path / "good", 12, 20, 16)
    text = tmp_path / "text" / "notes_2024-01-01.tif"
    text.parent.mkdir()
    text.write_text("not a raster")
    truncated = synthetic.make_geotiff_series(tmp_path / "trunc", 12, 20, 16)
    os.truncate(truncated[3], os.path.getsize(truncated[3]) // 2)
    crs = synthetic.make_geotiff_series(tmp_path / "crs", 1, 20, 16, crs="EPSG:32632", start="2025-01-01")
    shape = synthetic.make_geotiff_series(tmp_path / "shape", 1, 20, 17, start="2025-01-01")
    count = synthetic.make_geotiff_series(tmp_path / "count", 1, 20, 16, bands=2, start="2025-01-01")
    shifted = synthetic.make_geotiff_series(tmp_path / "shift", 1, 20, 16, origin=(0.0, 0.0), start="2025-01-01")
    dup = synthetic.make_geotiff_series(tmp_path / "dup", 1, 20, 16, start="2024-01-17", name_format="again_%Y%m%d.tif")
    nc = make_netcdf(tmp_path / "a.nc", n_frames=12)
    g = [str(p) for p in good]
    return {
        "missing": ([str(tmp_path / "nope.tif")], "nope.tif: no such file"),
        "not a raster": (g + [str(text)], f"{text}: not a readable raster"),
        "truncated": ([str(p) for p in truncated], f"{truncated[3]}"),
        "crs": (g + [str(crs[0])], f"{crs[0]}: CRS EPSG:32632 differs"),
        "shape": (g + [str(shape[0])], f"{shape[0]}: shape 20x17 differs"),
        "band count": (g + [str(count[0])], f"{count[0]}: band count 2 differs"),
        "transform": (g + [str(shifted[0])], f"{shifted[0]}: transform"),
        "duplicate time": (g + [str(dup[0])], f"{dup[0]}: time 2024-01-17"),
        "too few frames": (g[:4], f"{g[0]} (+3 more): 4 frames, fewer than --input-frames + --output-frames = 5"),
        "no such var": ([str(nc), "--var", "sst"], f"{nc}: no variable 'sst'"),
        "part too short": (g + ["--split", "0.8,0.1,0.1"], "the val part gets 1 of 12 frames"),
        "window too big": (g + ["--window", "32", "--split", "1,0,0"], "smaller than --window 32"),
    }


def test_bad_inputs(cli, tmp_path):
    out = tmp_path / "out" / "cube.zarr"
    out.parent.mkdir()
    for name, (inputs, message) in _bad_inputs(tmp_path).items():
        args = [
            "prepare",
            "-o",
            out,
            "--input-frames",
            "3",
            "--output-frames",
            "2",
            "--window",
            "8",
            "--split",
            "1,0,0",
            *inputs,
        ]  # options in `inputs` come last and win
        code, stdout, stderr = cli(args)
        assert code == 1, name
        assert stdout == "", name
        assert stderr.count("\n") == 1 and stderr.startswith("vmrnn: error: "), (name, stderr)
        assert message in stderr, (name, stderr)
        assert not out.exists() and list(out.parent.iterdir()) == [], name


def test_short_series_suggests_split(cli, tmp_path):
    synthetic.make_geotiff_series(tmp_path / "in", 6, 16, 16)
    code, _, stderr = cli(
        [
            "prepare",
            str(tmp_path / "in" / "*.tif"),
            "-o",
            tmp_path / "c.zarr",
            "--window",
            "16",
            "--input-frames",
            "3",
            "--output-frames",
            "2",
        ]
    )
    assert code == 1 and "--split 1,0,0" in stderr
    assert not (tmp_path / "c.zarr").exists()


def test_all_nodata_is_refused(cli, tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path / "in", 6, 16, 16)
    for path in paths:
        with rasterio.open(path, "r+") as dst:
            dst.write(np.full((1, 16, 16), -9999, np.float32))
    code, _, stderr = cli(
        ["prepare", str(tmp_path / "in" / "*.tif"), "-o", tmp_path / "c.zarr", *SMALL, "--split", "1,0,0"]
    )
    assert code == 1 and "no window of the train part has >= 50% valid pixels" in stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "c.zarr").exists()


def test_usage_errors_exit_2(cli, series, tmp_path):
    for bad in (["--split", "0.5,0.5"], ["--bands", "one"], ["--zarr-format", "4"]):
        code, _, stderr = cli(["prepare", str(series / "*.tif"), "-o", tmp_path / "c.zarr", *bad])
        assert code == 2, (bad, stderr)
    assert not (tmp_path / "c.zarr").exists()


def test_band_without_valid_train_pixels_is_refused(cli, tmp_path):
    paths = synthetic.make_geotiff_series(tmp_path / "in", 6, 16, 16, bands=3)
    for path in paths:  # windows stay 2/3 valid, so only the band check can refuse this
        with rasterio.open(path, "r+") as dst:
            dst.write(np.full((16, 16), -9999, np.float32), 2)
    args = ["prepare", str(tmp_path / "in" / "*.tif"), "-o", tmp_path / "c.zarr", *SMALL, "--split", "1,0,0"]
    code, _, stderr = cli(args)
    assert code == 1 and "band 2 has no valid pixel in the train part; drop it with --bands" in stderr
    code, _, stderr = cli(args + ["--bands", "1,3"])
    assert code == 0, stderr
